import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { RedactingStream, UserOutput } from '../../src/io/output.js';
import { createRedactor } from '../../src/io/redact.js';

function collect(): { stream: PassThrough; text: () => string } {
  const stream = new PassThrough();
  let text = '';
  stream.on('data', (d: Buffer) => (text += d.toString()));
  return { stream, text: () => text };
}

describe('redaction', () => {
  it('replaces every secret, longest first', () => {
    const r = createRedactor(['hunter2', 'hunter2-long', '']);
    assert.equal(r.redact('a hunter2 b hunter2-long c'), 'a *** b *** c');
  });

  it('catches a secret split across chunks and across a partial-line flush', async () => {
    const target = collect();
    const out = new RedactingStream(target.stream, createRedactor(['s3cr3t-token']));
    out.write('password is s3c');
    await sleep(250); // longer than the partial-line delay: the safe part is flushed, the tail held back
    assert.equal(target.text(), 'password is ');
    out.write(Buffer.from('r3t-token and done\n'));
    await new Promise<void>((resolve) => out.end(resolve));
    assert.equal(target.text(), 'password is *** and done\n');
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
