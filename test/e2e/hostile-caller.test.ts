import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import ssh2 from 'ssh2';
import { gitRepository } from '../../src/vcs/git.js';
import { runCli } from '../helpers/cli.js';
import { assertNoSecrets, buildArgs, unique } from '../helpers/build.js';
import { keyPath, testEnv } from '../helpers/env.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { registryImage, registryTags } from '../helpers/registry.js';
import { HgRepo, removeAll, staticSite } from '../helpers/repos.js';
import { ssh, startServer, type ServerProcess } from '../helpers/server.js';

/** The command line a CI script would send: the words quoted for the server's shell-style split. */
const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

describe('a caller cannot reach the server\'s own files through --service_id', () => {
  const repoWith = suiteRepos();
  let server: ServerProcess;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('--service_id ssh_host_ed25519_key builds in the cache directory and leaves the host key intact', async () => {
    const hostKeyFile = path.join(server.workDir, 'ssh_host_ed25519_key');
    const hostKey = readFileSync(hostKeyFile);
    const repo = repoWith('hostkey-id', staticSite());
    const image = unique('hostkey-id');
    for (const tag of ['1.0.0', '1.0.1']) {
      // Twice: the second build finds the cache and must not take the host key for a broken one.
      const res = await ssh(server, remote(buildArgs({ service: 'ssh_host_ed25519_key', repo: repo.url, revision: 'main', image, tags: [tag] })));
      assert.equal(res.code, 0, res.stderr);
      assertNoSecrets(res.stdout, res.stderr);
    }
    assert.deepEqual(readFileSync(hostKeyFile), hostKey, 'the host key is unchanged');
    assert.ok(lstatSync(path.join(server.workDir, 'cache', 'ssh_host_ed25519_key', '.git')).isDirectory(), 'the clone is in <work-dir>/cache');

    await server.stop();
    const again = await startServer({ workDir: server.workDir });
    assert.equal(again.fingerprint, server.fingerprint, 'the restarted server has the same host key');
    assert.equal((await ssh(again, ['buildbot.sh', '--help'])).code, 0);
    server = again;
  });

  it('at start, moves clone caches of the old layout into the cache directory, and nothing else', async () => {
    const repo = repoWith('migrate', staticSite());
    const image = unique('migrate');
    const work = server.workDir;
    await server.stop();
    // The old layout: <work-dir>/<service_id>, beside the server's own files.
    execFileSync('git', ['clone', '-q', '--no-checkout', repo.url, path.join(work, image)], {
      env: { ...process.env, GIT_SSH_COMMAND: `ssh -i ${keyPath('deploy_ed25519')} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR` },
      stdio: 'ignore',
    });
    mkdirSync(path.join(work, 'not-a-clone'));
    writeFileSync(path.join(work, 'not-a-clone', 'file'), 'stays');
    mkdirSync(path.join(work, 'file-git'));
    writeFileSync(path.join(work, 'file-git', '.git'), 'gitdir: /etc\n');
    const hostKey = readFileSync(path.join(work, 'ssh_host_ed25519_key'));

    server = await startServer({ workDir: work });
    assert.match(server.log(), new RegExp(`clone-cache-migrated service=${image} `));
    assert.ok(existsSync(path.join(work, 'cache', image, '.git')), 'the old cache moved');
    assert.ok(!existsSync(path.join(work, image)));
    assert.equal(readFileSync(path.join(work, 'not-a-clone', 'file'), 'utf8'), 'stays', 'a directory that is no clone stays');
    assert.ok(existsSync(path.join(work, 'file-git', '.git')), 'nor one whose .git is a file');
    assert.deepEqual(readFileSync(path.join(work, 'ssh_host_ed25519_key')), hostKey);

    const res = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: repo.head(), image })));
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /is in the clone cache already; not fetching/, 'the moved cache is used');
  });
});

describe('a password in an ssh:// URL', () => {
  const repoWith = suiteRepos();
  let server: ServerProcess;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('is dropped: the build authenticates with the key, and neither the output, the log nor the image label holds it', async () => {
    const repo = repoWith('ssh-pw', staticSite());
    const image = unique('ssh-pw');
    const password = 'url-pass-7Hq2';
    const url = repo.url.replace('ssh://root@', `ssh://root:${password}@`);
    assert.notEqual(url, repo.url);
    const res = await ssh(server, remote(buildArgs({ service: image, repo: url, revision: 'main', image })));
    assert.equal(res.code, 0, res.stderr);
    for (const text of [res.stdout, res.stderr, server.log()]) assert.ok(!text.includes(password), text);
    const labels = (await registryImage(image, '1.0.0')).labels;
    assert.equal(labels['org.opencontainers.image.source'], repo.url);
  });
});

describe('a caller\'s usage errors echo no secret', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('a deploy key wrapped by base64 at 76 columns, sent unquoted, gets a clear error and is not echoed', async () => {
    const wrapped = execFileSync('base64', [keyPath('deploy_ed25519')], { encoding: 'utf8' });
    const lines = wrapped.trim().split('\n');
    assert.ok(lines.length > 3);
    // As `ssh host buildbot.sh … --repo_auth_key $(base64 key)` sends it: the lines become words.
    const args = buildArgs({ service: 'wrapped', repo: 'git@example.com:o/r.git', revision: 'main', image: 'x', key: null });
    const res = await ssh(server, [`${quote(['buildbot.sh', ...args])} --repo_auth_key ${lines.join(' ')}`]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: --repo_auth_key is followed by \d+ more words of base64: .*"\$\(base64 -w0 deploy_key\)"/m);
    for (const line of lines) assert.ok(!res.stderr.includes(line) && !res.stdout.includes(line), `a line of the key was echoed: ${line}`);
    assertNoSecrets(res.stdout, res.stderr, server.log());
  });

  it('an https URL whose password does not parse is shown without its credentials', async () => {
    const args = buildArgs({ service: 'url', repo: 'https://build:Ab3/xY9+Zq@git.example.com/r', revision: 'main', image: 'x', key: null });
    const res = await ssh(server, remote(args));
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: --repo "https:\/\/\*\*\*@git\.example\.com\/r" is not a valid URL/m);
    assert.ok(!res.stderr.includes('Ab3') && !server.log().includes('Ab3'), res.stderr);
  });
});

/** Runs a command over SSH with ssh2's client, which reports stdout and stderr packets in the order they arrive. */
function sshInOrder(port: number, command: string): Promise<{ code: number | undefined; events: Array<['O' | 'E', string]> }> {
  return new Promise((resolve, reject) => {
    const events: Array<['O' | 'E', string]> = [];
    const conn = new ssh2.Client();
    conn.on('error', reject);
    conn.on('ready', () => conn.exec(command, (err, stream) => {
      if (err) return reject(err);
      let code: number | undefined;
      stream.on('data', (d: Buffer) => events.push(['O', d.toString()]));
      stream.stderr.on('data', (d: Buffer) => events.push(['E', d.toString()]));
      stream.on('exit', (c: number) => (code = c));
      stream.on('close', () => {
        conn.end();
        resolve({ code, events });
      });
    }));
    conn.connect({ host: '127.0.0.1', port, username: 'root', privateKey: readFileSync(keyPath('client_ed25519')) });
  });
}

/** The merged output as one string, each change of stream marked: the order in which the bytes arrived. */
const mergedOrder = (events: Array<['O' | 'E', string]>) => events.map(([s, t], i) => (i && events[i - 1][0] === s ? t : `<${s}>${t}`)).join('');

describe('a build cannot learn a secret from the order of its output', () => {
  const repoWith = suiteRepos();
  let server: ServerProcess;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('a true and a false prefix of the registry password give the same merged order of stdout and stderr', async () => {
    const password = testEnv().registryPassword;
    const truePrefix = password.slice(0, 8);
    const falsePrefix = `${password.slice(0, 7)}${password[7] === 'x' ? 'y' : 'x'}`;
    const orders: string[] = [];
    for (const guess of [truePrefix, falsePrefix]) {
      // The attack: a guess on stdout, a marker on stderr; a held guess used to let the marker pass it.
      const repo = repoWith('oracle', staticSite({
        buildExtra: [
          // The pauses only keep the engine from reordering its two pipes; the server must not.
          'sleep 0.2',
          'echo BEGIN',
          'for i in 1 2 3 4 5; do',
          `  printf '%s' '${guess}'`,
          '  sleep 0.1',
          '  echo "marker $i" >&2',
          '  sleep 0.1',
          "  printf ' \\n'",
          'done',
          'echo END',
        ].join('\n'),
      }));
      const image = unique('oracle');
      const res = await sshInOrder(server.port, quote(['buildbot.sh', ...buildArgs({ service: image, repo: repo.url, revision: 'main', image })]));
      assert.equal(res.code, 0, mergedOrder(res.events));
      const merged = mergedOrder(res.events);
      assertNoSecrets(merged);
      const segment = /BEGIN\n([\s\S]*)END\n/.exec(merged)?.[1];
      assert.ok(segment, merged);
      orders.push(segment.replaceAll(guess, 'GUESS'));
    }
    assert.match(orders[1], /^GUESS<E>marker 1\n<O> \nGUESS<E>marker 2\n/, 'the false prefix arrives in the order it was written');
    assert.equal(orders[0], orders[1], 'the order does not depend on whether the guess begins a secret');
  });
});

describe('Mercurial subrepositories are never checked out', () => {
  let work = '';
  before(() => {
    work = mkdtempSync(path.join(os.tmpdir(), 'buildbot-hgsub-'));
  });
  after(() => removeAll(work));

  it('a .hgsub naming another service\'s clone cache fails clearly and copies nothing of it', async () => {
    // Service B: a Mercurial repository with a file that service A must never see.
    const secretLine = `sources of service b ${unique('x')}`;
    const b = new HgRepo(unique('hgsub-b'));
    const bCommit = b.commit({ ...staticSite(), 'private.txt': `${secretLine}\n` });
    const bImage = unique('hgsub-b');
    const built = await runCli(buildArgs({ service: bImage, repo: b.url, revision: bCommit, image: bImage, extra: ['--vcs', 'hg'] }), work);
    assert.equal(built.code, 0, built.stderr);
    const bCache = path.join(work, 'cache', bImage);
    assert.ok(existsSync(path.join(bCache, 'private.txt')));

    // Service A: its .hgsub points at B's clone cache on the build server.
    const a = new HgRepo(unique('hgsub-a'));
    const aCommit = a.commit({
      ...staticSite({ buildExtra: 'cat sub/private.txt || true; ls -R sub || true' }),
      '.hgsub': `sub = ${bCache}\n`,
      '.hgsubstate': `${bCommit} sub\n`,
    });
    const aImage = unique('hgsub-a');
    const res = await runCli(buildArgs({ service: aImage, repo: a.url, revision: aCommit, image: aImage, extra: ['--vcs', 'hg'] }), work);
    assert.equal(res.code, 1, res.stdout + res.stderr);
    assert.match(res.stderr, /^error: the repository uses Mercurial subrepositories \(\.hgsub\), which buildbot never checks out/m);
    assert.ok(!(res.stdout + res.stderr).includes(secretLine), 'B\'s sources are not in A\'s output');
    assert.ok(!existsSync(path.join(work, 'cache', aImage, 'sub', 'private.txt')), 'nor in A\'s checkout');
    assert.deepEqual(await registryTags(aImage), [], 'and nothing was pushed');
  });
});

describe('git sends https credentials only to the repository\'s URL', () => {
  it('a redirect to another host does not carry the Authorization header', async () => {
    const seen: Array<{ host: string; path: string; auth?: string }> = [];
    const server = http.createServer((req, res) => {
      seen.push({ host: req.headers.host ?? '', path: req.url ?? '', auth: req.headers.authorization });
      if (req.headers.host?.startsWith('127.0.0.1')) {
        res.writeHead(302, { Location: `http://localhost:${(server.address() as AddressInfo).port}/elsewhere${req.url}` });
      } else {
        res.writeHead(404);
      }
      res.end();
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const url = `http://127.0.0.1:${port}/org/repo.git`;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'buildbot-header-'));
    try {
      const repo = gitRepository({
        sshCommand: 'ssh', signal: new AbortController().signal,
        env: { PATH: process.env.PATH ?? '', HOME: dir, GIT_TERMINAL_PROMPT: '0' },
        basicAuth: { url, credentials: Buffer.from('bot:header-secret').toString('base64') },
      });
      await repo.clone(url, path.join(dir, 'clone')).catch(() => undefined);
    } finally {
      server.close();
      removeAll(dir);
    }
    const first = seen.find((r) => r.host.startsWith('127.0.0.1'));
    const redirected = seen.find((r) => r.host.startsWith('localhost'));
    assert.ok(first && redirected, JSON.stringify(seen));
    assert.equal(first.auth, `Basic ${Buffer.from('bot:header-secret').toString('base64')}`, 'the repository\'s URL gets the header');
    assert.equal(redirected.auth, undefined, 'the host a redirect leads to does not');
  });
});

describe('what an unauthenticated client can make the server do', () => {
  let server: ServerProcess;
  let keys = '';
  before(async () => {
    server = await startServer();
    keys = mkdtempSync(path.join(os.tmpdir(), 'buildbot-keys-'));
    for (let i = 0; i < 8; i++) execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(keys, `k${i}`)]);
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir, keys);
  });

  it('offers no Diffie-Hellman group exchange: only curve25519 and ECDH', async () => {
    for (const kex of ['diffie-hellman-group-exchange-sha256', 'diffie-hellman-group16-sha512', 'diffie-hellman-group14-sha256']) {
      const res = await ssh(server, ['buildbot.sh', '--help'], { extra: ['-o', `KexAlgorithms=${kex}`] });
      assert.equal(res.code, 255, kex);
    }
    // The client is run quiet (LogLevel=ERROR); the server says why each handshake failed.
    const refusals = () => server.log().match(/connection-error addr=\S+ error="Handshake failed: no matching key exchange algorithm"/g)?.length ?? 0;
    await eventually(() => refusals() === 3, 'three handshakes refused in the server log');
    for (const kex of ['curve25519-sha256', 'ecdh-sha2-nistp256']) {
      const res = await ssh(server, ['buildbot.sh', '--help'], { extra: ['-o', `KexAlgorithms=${kex}`] });
      assert.equal(res.code, 0, `${kex}: ${res.stderr}`);
    }
  });

  it('disconnects a client after 6 failed authentication attempts', async () => {
    // Nine keys, none of them the authorized one.
    const identities = Array.from({ length: 8 }, (_, i) => ['-i', path.join(keys, `k${i}`)]).flat();
    const res = await ssh(server, ['buildbot.sh', '--help'], { key: 'stranger_ed25519', extra: [...identities, '-v'] });
    assert.equal(res.code, 255);
    // The client may offer one more key before it reads the disconnect that follows the sixth refusal.
    const offered = res.stderr.match(/Offering public key/g)?.length ?? 0;
    assert.ok(offered >= 6 && offered <= 7, `the client got to offer ${offered} of 9 keys:\n${res.stderr}`);
    assert.match(res.stderr, /Received disconnect|Disconnected from|Connection closed/);
    await server.waitForLog(/ auth-too-many addr=127\.0\.0\.1:\d+ attempts=6$/m);
  });

  it('logs at most 64 characters of a user name', async () => {
    const name = 'u'.repeat(2000);
    const res = await ssh(server, ['buildbot.sh', '--help'], { key: 'stranger_ed25519', extra: ['-l', name] });
    assert.equal(res.code, 255);
    await server.waitForLog(/auth-refused .*user=/);
    const users = [...server.log().matchAll(/ user=("?)(u+)…?\1 /g)].map((m) => m[2].length);
    assert.ok(users.length > 0, server.log());
    assert.ok(users.every((n) => n === 64), `logged user name lengths: ${users.join(', ')}`);
  });
});
