import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import { demux } from '../../src/docker/containers.js';
import { RedactingStream } from '../../src/io/output.js';
import { createRedactor } from '../../src/io/redact.js';

function frame(stream: 1 | 2, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = stream;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

/** A writable that records each write it receives, as the SSH channel would send them. */
function recorder(): PassThrough & { writes: string[] } {
  const stream = Object.assign(new PassThrough(), { writes: [] as string[] });
  stream.on('data', (d: Buffer) => stream.writes.push(d.toString()));
  return stream;
}

describe('attach stream demultiplexer', () => {
  it('splits frames cut anywhere, even inside a header', async () => {
    const wire = Buffer.concat([frame(1, 'out one\n'), frame(2, 'err one\n'), frame(1, 'out two\n')]);
    for (let cut = 1; cut < wire.length; cut++) {
      const source = new PassThrough();
      const [stdout, stderr] = [recorder(), recorder()];
      const done = demux(source, stdout, stderr);
      source.write(wire.subarray(0, cut));
      source.end(wire.subarray(cut));
      await done;
      assert.equal(stdout.writes.join(''), 'out one\nout two\n', `cut at ${cut}`);
      assert.equal(stderr.writes.join(''), 'err one\n', `cut at ${cut}`);
    }
  });

  it('hands the pieces of one read on as one write, so the SSH channel sends full packets', async () => {
    const source = new PassThrough();
    const [stdout, stderr] = [recorder(), recorder()];
    const none = createRedactor([]);
    const done = demux(source, new RedactingStream(stdout, none), new RedactingStream(stderr, none));
    source.end(Buffer.concat([frame(1, 'a\n'), frame(1, 'b\n'), frame(2, 'e\n'), frame(1, 'c\n')]));
    await done;
    assert.deepEqual(stdout.writes, ['a\nb\nc\n']);
    assert.deepEqual(stderr.writes, ['e\n']);
  });

  it('joins the frames of a read that holds one stream only, around the headers', async () => {
    const source = new PassThrough();
    const [stdout, stderr] = [recorder(), recorder()];
    const done = demux(source, stdout, stderr);
    const wire = Buffer.concat([frame(1, 'first half of a line, '), frame(1, 'x\n'), frame(1, 'y\n')]);
    source.write(wire.subarray(0, 12)); // ends inside the first frame
    source.end(wire.subarray(12));
    await done;
    assert.deepEqual(stdout.writes, ['firs', 't half of a line, x\ny\n']);
    assert.deepEqual(stderr.writes, []);
  });
});
