import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { describe, it } from 'node:test';
import { Tokens } from '../../src/fronts/http/auth.js';
import { HttpError, requestFromJson } from '../../src/fronts/http/body.js';
import { Build } from '../../src/service/build.js';
import { RecordLog } from '../../src/model/record-log.js';
import { newBuildId, BUILD_ID } from '../../src/model/build-id.js';
import type { BuildRecord } from '../../src/model/build.js';
import { defaultBuildOptions } from '../../src/request/build-options.js';
import type { BuildRequest } from '../../src/request/types.js';
import { SECRET_ENV } from '../../src/request/parse.js';
import { splitArgs } from '../../src/cli/remote.js';
import { OutputChunk } from '../../src/service/build.js';
import { recordJson, textBytes } from '../../src/model/record-json.js';

const output = (seq: number, data: string): BuildRecord => ({ seq, time: '', type: 'output', stream: 'stdout', data });

const REQUEST: BuildRequest = {
  serviceId: 'svc', repo: { url: 'ssh://h/r', vcs: 'git', displayUrl: 'ssh://h/r' }, revision: 'main',
  image: 'r/x', tags: ['1'], registry: { server: 'docker.io', notes: [] }, build: defaultBuildOptions(), secrets: [],
};

describe('the record log of a build', () => {
  it('keeps everything within the cap', () => {
    const log = new RecordLog(100, 0);
    for (let i = 1; i <= 5; i++) log.append(output(i, 'x'.repeat(10)));
    assert.deepEqual([...log.replay()].map((r) => r.seq), [1, 2, 3, 4, 5]);
    assert.deepEqual([...log.replay(3)].map((r) => r.seq), [4, 5]);
  });

  it('past the cap keeps the head and the tail, and one cut record says how much went', () => {
    const log = new RecordLog(100, 0);
    for (let i = 1; i <= 20; i++) log.append(output(i, 'x'.repeat(10)));
    log.append({ seq: 21, time: '', type: 'exit', code: 0, status: 'succeeded' });
    const kept = [...log.replay()];
    assert.deepEqual(kept.map((r) => r.seq), [1, 2, 3, 4, 5, 15, 16, 17, 18, 19, 20, 21]);
    assert.deepEqual(kept[5], { seq: 15, time: '', type: 'cut', bytes: 100, records: 10 });
    // The cut record stands at the seq of the last record it replaces, so resuming after it works.
    assert.deepEqual([...log.replay(15)].map((r) => r.seq), [16, 17, 18, 19, 20, 21]);
    assert.deepEqual([...log.replay(8)].map((r) => r.seq), [15, 16, 17, 18, 19, 20, 21]);
  });
});

describe('the record log of a build, counted per record', () => {
  it('a build printing a byte at a time keeps a bounded number of records, and the cut counts output bytes', () => {
    const log = new RecordLog(1024 * 1024);
    for (let i = 1; i <= 200_000; i++) log.append(output(i, 'x'));
    const kept = [...log.replay()];
    // 1 MB of cap at 129 bytes a record: about 8,100 records, not 200,000.
    assert.ok(kept.length < 8200, `${kept.length} records kept`);
    const cut = kept.find((r) => r.type === 'cut') as { bytes: number; records: number };
    assert.equal(cut.records, 200_000 - (kept.length - 1));
    assert.equal(cut.bytes, cut.records);
  });
});

describe('a build\'s followers', () => {
  it('replay what was kept, then get records live; a full blocking follower holds the output until it drains', () => {
    const build = new Build(newBuildId(), REQUEST, 'local', 1024, () => {});
    assert.ok(build.io.stdout.write(Buffer.from('one\n')));
    const got: string[] = [];
    let resume: (() => void) | undefined;
    build.subscribe({
      record: (r) => {
        got.push(r.type === 'output' ? r.data : r.type);
        return got.length < 2;
      },
      onDrain: (fn) => (resume = fn),
    }, { blocking: true });
    assert.deepEqual(got, ['one\n']);
    assert.equal(build.io.stdout.write(Buffer.from('two\n')), false, 'the follower is full');
    let drained = false;
    build.io.stdout.once('drain', () => (drained = true));
    assert.equal(drained, false);
    resume!();
    assert.equal(drained, true);
  });

  it('a follower that is not blocking never holds the output', () => {
    const build = new Build(newBuildId(), REQUEST, 'http', 1024, () => {});
    build.subscribe({ record: () => false });
    assert.ok(build.io.stderr.write(Buffer.from('x')));
  });

  it('characters cut between two writes arrive whole, and the exit record ends the stream', () => {
    const build = new Build(newBuildId(), REQUEST, 'ssh', 1024, () => {});
    const euro = Buffer.from('€\n');
    build.io.stdout.write(euro.subarray(0, 1));
    build.io.stdout.write(euro.subarray(1));
    build.finish(0, 'succeeded');
    const records = [...build.log.replay()];
    assert.equal(records.filter((r) => r.type === 'output').map((r) => (r as { data: string }).data).join(''), '€\n');
    assert.deepEqual(records.at(-1), { ...records.at(-1), type: 'exit', code: 0, status: 'succeeded' });
    assert.equal(build.summary.output_bytes.stdout, euro.length);
  });

  it('build ids sort by creation time', () => {
    const a = newBuildId();
    assert.match(a, BUILD_ID);
    assert.ok(a.slice(0, 9) <= newBuildId().slice(0, 9));
  });
});

describe('API tokens', () => {
  const req = (authorization?: string) => ({ headers: { authorization } }) as IncomingMessage;
  const tokens = new Tokens(['full-token-0123456789'], ['read-token-0123456789']);

  it('grant full or read access to a Bearer token, none otherwise', () => {
    assert.equal(tokens.check(req('Bearer full-token-0123456789')), 'full');
    assert.equal(tokens.check(req('bearer read-token-0123456789')), 'read');
    assert.equal(tokens.check(req('Bearer full-token-012345678')), 'none');
    assert.equal(tokens.check(req('Basic full-token-0123456789')), 'none');
    assert.equal(tokens.check(req()), 'none');
    assert.equal(new Tokens([], []).check(req('Bearer ')), 'none');
  });
});

describe('a JSON build request', () => {
  it('is refused with the JSON name of the field at fault', async () => {
    const refusal = async (body: unknown) => {
      try {
        await requestFromJson(body);
      } catch (err) {
        assert.ok(err instanceof HttpError);
        return { status: err.status, field: err.field, message: err.message };
      }
      assert.fail('accepted');
    };
    assert.equal((await refusal([])).status, 400);
    assert.equal((await refusal({ service_id: 'a' })).field, 'repo');
    assert.equal((await refusal({ service_id: 'a', repo: 'ssh://h/r', revision: 'main', image: 'x', tags: 'v1' })).field, 'tags');
    assert.equal((await refusal({ service_id: 'a', repo: 'ssh://h/r', revision: 'main', image: 'x', tag: ['v1'] })).field, 'tag');
    assert.equal((await refusal({ service_id: 'a', repo: 'ssh://h/r', revision: 'main', image: 'x', tags: [{}] })).field, 'tags');
    const login = await refusal({ service_id: 'a', repo: 'ssh://h/r', revision: 'main', image: 'x', tags: ['1'], docker_login_cmd: 'docker login -u me h0st.example pa55word-swapped' });
    assert.equal(login.field, 'docker_login_cmd');
    assert.doesNotMatch(login.message, /pa55word-swapped|--/);
  });

  it('is the same request as the command line\'s', async () => {
    const request = await requestFromJson({ service_id: 'a', repo: 'ssh://git@h/r', revision: 'main', image: 'reg.example/x', tags: ['1', 'latest'], vcs: 'git' });
    assert.equal(request.serviceId, 'a');
    assert.deepEqual(request.tags, ['1', 'latest']);
    assert.equal(request.registry.server, 'reg.example');
  });
});

describe('buildbot.sh --server', () => {
  it('reads the same secret variables as a local run', () => {
    const env = { [SECRET_ENV.registryUser]: 'u', [SECRET_ENV.registryPassword]: 'p', [SECRET_ENV.loginCmd]: undefined };
    assert.equal(splitArgs(['--server', 'http://b.example'], env).body.docker_login_cache, Buffer.from('u:p').toString('base64'));
    assert.equal(splitArgs(['--server', 'http://b.example'], { [SECRET_ENV.loginCmd]: 'docker login -u a -p b' }).body.docker_login_cmd, 'docker login -u a -p b');
  });

  it('sends the flags as the JSON body: --tag as tags, repeated flags as arrays, secrets from the environment', () => {
    const { server, body } = splitArgs(['--server', 'https://b.example:8080/x', '--service_id', 'a', '--tag', '1,2', '--tag=latest', '--build_arg', 'A=1', '--build_arg', 'B=2', '--pull'], { BUILDBOT_REPO_AUTH_KEY: 'k' });
    assert.equal(server.href, 'https://b.example:8080/x');
    assert.deepEqual(body, { service_id: 'a', tags: ['1', '2', 'latest'], build_arg: ['A=1', 'B=2'], pull: true, repo_auth_key: 'k' });
    assert.throws(() => splitArgs(['--server', 'https://u:p@b.example'], {}), /without credentials/);
    assert.throws(() => splitArgs(['--service_id', 'a'], {}), /--server needs the URL/);
  });
});

describe('records as JSON lines', () => {
  it('escapes output bytes exactly as JSON.stringify does, with any prefix and suffix', () => {
    const samples = [
      'plain text', 'seq\n0000001\n', 'quote " backslash \\ slash /', '\x00\x01\x07\x08\t\n\x0b\x0c\r\x1b[31m\x1f\x7f',
      'é € 😀 \u2028 \u2029 \ufeff', '',
    ];
    for (const text of samples) {
      const chunk = new OutputChunk(7, 'stderr', Buffer.from(text));
      const json = recordJson(chunk);
      assert.equal(typeof json, 'object', 'output with its bytes is escaped from the bytes');
      assert.equal(textBytes(json).toString(), `${JSON.stringify(chunk)}\n`);
      assert.equal(textBytes(recordJson(chunk, 'id: 7\ndata: ', '\n\n')).toString(), `id: 7\ndata: ${JSON.stringify(chunk)}\n\n`);
      assert.equal((JSON.parse(textBytes(json).toString()) as { data: string }).data, text);
    }
    // Bytes that are not UTF-8 are replaced, as the decoder does for the stored log.
    const broken = new OutputChunk(8, 'stdout', Buffer.from([0x61, 0xff, 0xc3, 0x28, 0x62]));
    assert.equal(recordJson(broken), `${JSON.stringify({ seq: 8, time: broken.time, type: 'output', stream: 'stdout', data: 'a\ufffd\ufffd(b' })}\n`);
    const step = { seq: 9, time: 't', type: 'step' as const, name: 'image', phase: 'end' as const, duration: 1.5, ok: true };
    assert.equal(recordJson(step), `${JSON.stringify(step)}\n`);
  });
});
