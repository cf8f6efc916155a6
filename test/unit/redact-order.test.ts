import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { demux } from '../../src/docker/containers.js';
import { UserOutput } from '../../src/io/output.js';
import { createRedactor } from '../../src/io/redact.js';

/** Both targets record into one log, in the order the writes reach them, as an SSH channel sends them. */
function merged() {
  const events: Array<{ stream: 'out' | 'err'; text: string }> = [];
  const target = (stream: 'out' | 'err') => {
    const t = new PassThrough();
    const write = t.write.bind(t);
    t.write = ((chunk: Buffer | string, ...rest: never[]) => {
      events.push({ stream, text: chunk.toString() });
      return write(chunk, ...rest);
    }) as typeof t.write;
    t.resume();
    return t;
  };
  const io = { stdout: target('out'), stderr: target('err') };
  return {
    io,
    events,
    /** The merged log as one string, each write tagged with its stream. */
    log: () => events.map((e) => `${e.stream}:${e.text}`).join('|'),
    order: () => events.map((e) => e.stream).filter((s, i, all) => i === 0 || all[i - 1] !== s).join(','),
    text: (stream: 'out' | 'err') => events.filter((e) => e.stream === stream).map((e) => e.text).join(''),
  };
}

const SECRET = 'Zq9-hunter2-secret';

describe('redaction keeps the order of stdout and stderr', () => {
  it('a guess that begins a secret and one that does not give the same merged order (the oracle)', async () => {
    const runs = new Map<string, ReturnType<typeof merged>>();
    for (const guess of ['Zq9-hun', 'Zq9-hux']) {
      const m = merged();
      const out = new UserOutput(m.io, createRedactor([SECRET]));
      for (let i = 0; i < 5; i++) {
        // The attack: a guess on stdout, a marker on stderr, and what they look like merged.
        out.stdout.write(guess);
        out.stderr.write(`M${i}\n`);
        await sleep(0);
        out.stdout.write(' ');
      }
      await out.close();
      assert.ok(!m.log().includes(SECRET));
      runs.set(guess, m);
    }
    const [truePrefix, falsePrefix] = [...runs.values()];
    assert.equal(truePrefix.order(), 'out,err,out,err,out,err,out,err,out,err,out');
    assert.equal(truePrefix.order(), falsePrefix.order());
    assert.equal(truePrefix.log().replaceAll('Zq9-hun', 'G'), falsePrefix.log().replaceAll('Zq9-hux', 'G'), 'the same writes, guess aside');
  });

  it('a secret split by a write on the other stream is redacted where it began, and the other stream waits behind it', async () => {
    const m = merged();
    const out = new UserOutput(m.io, createRedactor([SECRET]));
    out.stdout.write('token: Zq9-');
    out.stderr.write('in between\n');
    await sleep(0);
    assert.equal(m.log(), 'out:token: ', 'stderr waits behind the held possible secret');
    out.stdout.write('hunter2-secret and on\n');
    await out.close();
    assert.equal(m.log(), 'out:token: |out:***|err:in between\n|out: and on\n');
  });

  it('a held tail that turns out to be no secret goes out in its place', async () => {
    const m = merged();
    const out = new UserOutput(m.io, createRedactor([SECRET]));
    out.stdout.write('a Zq9');
    out.stderr.write('E1 ');
    out.stdout.write('-h');
    out.stderr.write('E2 ');
    out.stdout.write('x\n');
    await out.close();
    assert.equal(m.order(), 'out,err,out,err,out');
    assert.equal(m.text('out'), 'a Zq9-hx\n');
    assert.equal(m.text('err'), 'E1 E2 ');
  });

  it('lets go of a held tail when the other stream floods, instead of buffering or stalling', async () => {
    const m = merged();
    const out = new UserOutput(m.io, createRedactor([SECRET]));
    out.stdout.write('Zq9-hun');
    const flood = Buffer.alloc(64 * 1024, 'e');
    for (let i = 0; i < 8; i++) out.stderr.write(flood);
    await sleep(0);
    assert.equal(m.events[0].text, 'Zq9-hun', 'released in its place, before the flood');
    assert.ok(m.text('err').length >= 256 * 1024, 'the flood went out without waiting for stdout');
    out.stdout.write('ter2-secret\n');
    await out.close();
    assert.equal(m.order(), 'out,err,out');
  });

  it('keeps the order of frames within one engine read', async () => {
    const m = merged();
    const out = new UserOutput(m.io, createRedactor([]));
    const frame = (stream: 1 | 2, text: string) => {
      const header = Buffer.alloc(8);
      header[0] = stream;
      header.writeUInt32BE(Buffer.byteLength(text), 4);
      return Buffer.concat([header, Buffer.from(text)]);
    };
    const source = new PassThrough();
    const done = demux(source, out.stdout, out.stderr);
    source.end(Buffer.concat([frame(1, 'a\n'), frame(1, 'b\n'), frame(2, 'e\n'), frame(1, 'c\n')]));
    await done;
    await out.close();
    assert.equal(m.log(), 'out:a\nb\n|err:e\n|out:c\n', 'consecutive frames of one stream still leave as one write');
  });

  it('passes a partial line at once when nothing is held', async () => {
    const m = merged();
    const out = new UserOutput(m.io, createRedactor([SECRET]));
    out.stdout.write('50% ');
    out.stderr.write('warn ');
    out.stdout.write('Z');
    await sleep(0);
    assert.equal(m.log(), 'out:50% |err:warn ');
    out.stdout.write('!\n');
    await out.close();
    assert.equal(m.log(), 'out:50% |err:warn |out:Z!\n');
  });
});
