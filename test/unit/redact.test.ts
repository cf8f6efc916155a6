import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedactingStream, UserOutput } from '../../src/io/output.js';
import { createRedactor } from '../../src/io/redact.js';

/** What reached the target, decoded only when read: bytes may arrive cut inside a character. */
function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  const chunks: Buffer[] = [];
  stream.on('data', (d: Buffer) => chunks.push(d));
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

describe('redaction', () => {
  it('replaces every secret, longest first', () => {
    const r = createRedactor(['hunter2', 'hunter2-long', '']);
    assert.equal(r.redact('a hunter2 b hunter2-long c'), 'a *** b *** c');
  });

  it('redacts bytes without decoding them, so a chunk may end inside a character', () => {
    const r = createRedactor(['pw-1', 'pw-1-longer']);
    const bytes = Buffer.from('€ pw-1-longer pw-1 €');
    const cut = bytes.subarray(0, bytes.length - 1); // the last € lacks its final byte
    assert.deepEqual(r.redactBytes(cut), Buffer.concat([Buffer.from('€ *** *** '), bytes.subarray(bytes.length - 3, bytes.length - 1)]));
    const clean = Buffer.from('no secret here');
    assert.equal(r.redactBytes(clean), clean, 'output without a secret is passed on as the same buffer');
  });

  it('holds back exactly the tail that could begin a secret', () => {
    const r = createRedactor(['abcdef', 'xyz']);
    assert.equal(r.unsafeTailLength(Buffer.from('log line ab')), 2);
    assert.equal(r.unsafeTailLength(Buffer.from('log line abcde')), 5);
    assert.equal(r.unsafeTailLength(Buffer.from('log line abcdef')), 0, 'a whole secret is redacted, not held');
    assert.equal(r.unsafeTailLength(Buffer.from('abx')), 1, 'x could begin xyz');
    assert.equal(r.unsafeTailLength(Buffer.from('log line\n')), 0);
    assert.equal(createRedactor([]).unsafeTailLength(Buffer.from('abc')), 0);
  });

  it('never splits a whole secret whose end begins another', async () => {
    const target = collect();
    const out = new RedactingStream(target.stream, createRedactor(['cdef', 'efgh']));
    out.write('abcdef'); // "ef" could begin efgh, but cutting there would send "cd" of cdef
    await sleep(0);
    out.write('xx\n');
    await new Promise<void>((resolve) => out.end(resolve));
    assert.equal(target.text(), 'ab***xx\n');
  });

  it('passes a partial line on at once and catches a secret split across chunks', async () => {
    const target = collect();
    const out = new RedactingStream(target.stream, createRedactor(['s3cr3t-token']));
    out.write('progress 50% ');
    await sleep(0);
    assert.equal(target.text(), 'progress 50% ', 'a prompt or progress bar shows without waiting for a newline');
    out.write('password is s3c');
    await sleep(0);
    assert.equal(target.text(), 'progress 50% password is ', 'the possible start of the secret is held back');
    out.write(Buffer.from('r3t-token and done\n'));
    await new Promise<void>((resolve) => out.end(resolve));
    assert.equal(target.text(), 'progress 50% password is *** and done\n');
  });

  it('keeps multi-byte characters split across chunks intact', async () => {
    const target = collect();
    const out = new RedactingStream(target.stream, createRedactor([]));
    const bytes = Buffer.from('héllo wörld\n');
    out.write(bytes.subarray(0, 2));
    out.write(bytes.subarray(2));
    await new Promise<void>((resolve) => out.end(resolve));
    assert.equal(target.text(), 'héllo wörld\n');
  });

  it('puts a header on a line of its own after output that did not end its line', async () => {
    const stdout = collect();
    const stderr = collect();
    const out = new UserOutput({ stdout: stdout.stream, stderr: stderr.stream }, createRedactor([]));
    out.stdout.write('downloading... 100%');
    out.line('1.0s | # image');
    out.line('next');
    await out.close();
    assert.equal(stdout.text(), 'downloading... 100%\n1.0s | # image\nnext\n');
  });

  it('never ends the target, so the SSH channel can still send the exit status', async () => {
    const stdout = collect();
    const stderr = collect();
    const out = new UserOutput({ stdout: stdout.stream, stderr: stderr.stream }, createRedactor(['pw']));
    out.line('header pw');
    out.errorLine('error: pw');
    await out.close();
    assert.equal(stdout.text(), 'header ***\n');
    assert.equal(stderr.text(), 'error: ***\n');
    assert.equal(stdout.stream.writableEnded, false);
  });

  it('waits for drain when the target is full instead of buffering', async () => {
    const target = new PassThrough({ highWaterMark: 16 });
    const out = new RedactingStream(target, createRedactor([]));
    let finished = false;
    out.write('x'.repeat(1024) + '\n', () => (finished = true));
    await sleep(50);
    assert.equal(finished, false, 'the write waits while nobody reads the target');
    target.resume();
    await sleep(50);
    assert.equal(finished, true);
  });
});
