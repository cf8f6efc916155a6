import type { BuildRecord, CutRecord } from './build.js';

/**
 * The records of one build, kept within a cap: the head up to half of it, then a tail that
 * keeps the last half; what falls out of the middle is counted and stands as one `cut` record.
 * Step, queued and exit records are kept whatever the cap (they are few and small).
 */
export class RecordLog {
  private readonly head: BuildRecord[] = [];
  private tail: BuildRecord[] = [];
  /** Index of the oldest live entry of tail (dropping from the front without shifting). */
  private tailStart = 0;
  private headBytes = 0;
  private tailBytes = 0;
  private cutting = false;
  cutBytes = 0;
  cutRecords = 0;
  private lastCutSeq = 0;
  private lastCutTime = '';

  /**
   * `recordOverhead`: what an output record costs besides its bytes, counted against the cap, so
   * that a build printing a byte at a time cannot keep millions of records (each an object in
   * memory, and a loop iteration for every page that reads the log).
   */
  constructor(private readonly capBytes: number, private readonly recordOverhead = RECORD_OVERHEAD) {}

  private weight(record: BuildRecord): number {
    return record.type === 'output' ? sizeOf(record) + this.recordOverhead : 0;
  }

  append(record: BuildRecord): void {
    const size = this.weight(record);
    if (!this.cutting && this.headBytes + size <= this.capBytes / 2) {
      this.head.push(record);
      this.headBytes += size;
      return;
    }
    this.cutting = true;
    this.tail.push(record);
    this.tailBytes += size;
    while (this.tailBytes > this.capBytes / 2 && this.tailStart < this.tail.length) {
      const oldest = this.tail[this.tailStart++];
      this.tailBytes -= this.weight(oldest);
      this.cutBytes += sizeOf(oldest);
      this.cutRecords++;
      this.lastCutSeq = oldest.seq;
      this.lastCutTime = oldest.time;
    }
    if (this.tailStart > 1024 && this.tailStart * 2 > this.tail.length) {
      this.tail = this.tail.slice(this.tailStart);
      this.tailStart = 0;
    }
  }

  /** The kept records after seq `after`, with a cut record where output was left out. */
  *replay(after = 0): Generator<BuildRecord> {
    // Records are in seq order: a reader catching up a window at a time starts where it left off.
    for (let i = firstAfter(this.head, 0, after); i < this.head.length; i++) yield this.head[i];
    if (this.cutRecords && this.lastCutSeq > after) yield this.cutRecord();
    const tail = this.tail;
    for (let i = firstAfter(tail, this.tailStart, after); i < tail.length && tail === this.tail; i++) yield tail[i];
  }

  /** The cut stands at the seq of the last record it replaces, so resuming after it works. */
  cutRecord(): CutRecord {
    return { seq: this.lastCutSeq, time: this.lastCutTime, type: 'cut', bytes: this.cutBytes, records: this.cutRecords };
  }

  /** Whether the head is complete (later records go to the tail and may still be cut). */
  get headClosed(): boolean {
    return this.cutting;
  }
}

/** Roughly what an output record object with its time string costs in memory, counted against the cap. */
export const RECORD_OVERHEAD = 128;

/** Output bytes a record holds, without decoding a chunk that carries its bytes. */
function sizeOf(record: BuildRecord): number {
  if (record.type !== 'output') return 0;
  const { bytes } = record as { bytes?: Buffer };
  return bytes ? bytes.length : Buffer.byteLength(record.data);
}

/** The index of the first record from `from` on whose seq is above `after` (records.length if none). */
function firstAfter(records: readonly BuildRecord[], from: number, after: number): number {
  let lo = from;
  let hi = records.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (records[mid].seq > after) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}
