import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FrameReader, HEARTBEAT_FRAME, recordFrame } from '../../src/model/record-frames.js';
import type { BuildRecord } from '../../src/model/build.js';

const records: BuildRecord[] = [
  { seq: 1, time: 't', type: 'queued', place: 2 } as BuildRecord,
  { seq: 2, time: 't', type: 'output', stream: 'stdout', data: 'héllo\n' },
  { seq: 3, time: 't', type: 'output', stream: 'stderr', data: 'x'.repeat(70_000) },
  { seq: 4, time: 't', type: 'exit', code: 0, status: 'succeeded' } as BuildRecord,
];

function read(bytes: Buffer, cut: (i: number) => number) {
  const out = { stdout: [] as Buffer[], stderr: [] as Buffer[], ends: [] as number[], records: [] as BuildRecord[] };
  const reader = new FrameReader({
    output: (stream, _seq, piece, offset) => {
      assert.equal(offset, Buffer.concat(out[stream]).length, 'pieces come in order, each at its offset');
      out[stream].push(Buffer.from(piece));
    },
    outputEnd: (seq) => out.ends.push(seq),
    record: (record) => out.records.push(record),
  });
  for (let i = 0, at = 0; at < bytes.length; i++) {
    const n = Math.max(1, cut(i));
    reader.write(bytes.subarray(at, at + n));
    at += n;
  }
  return out;
}

describe('record frames', () => {
  const bytes = Buffer.concat([HEARTBEAT_FRAME, ...records.map(recordFrame), HEARTBEAT_FRAME]);
  for (const [name, cut] of [['whole', () => bytes.length], ['byte by byte', () => 1], ['odd pieces', (i: number) => (i * 7919) % 4099]] as const) {
    it(`give back every record, read ${name}`, () => {
      const out = read(bytes, cut);
      assert.equal(Buffer.concat(out.stdout).toString(), 'héllo\n');
      assert.equal(Buffer.concat(out.stderr).toString(), 'x'.repeat(70_000));
      assert.deepEqual(out.ends, [2, 3]);
      assert.deepEqual(out.records, [records[0], records[3]]);
    });
  }
  it('refuse what no server of ours sends', () => {
    const reader = new FrameReader({ output() {}, outputEnd() {}, record() {} });
    assert.throws(() => reader.write(Buffer.from([7, 0, 0, 0, 1, 0, 0, 0, 0])), /not a frame/);
    const huge = Buffer.alloc(9);
    huge.writeUInt32BE(0xffffffff, 5);
    assert.throws(() => new FrameReader({ output() {}, outputEnd() {}, record() {} }).write(huge), /not a frame/);
  });
});
