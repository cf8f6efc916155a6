import type { BuildRecord, CutRecord } from './types.js';

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

  constructor(private readonly capBytes: number) {}

  append(record: BuildRecord): void {
    const size = sizeOf(record);
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
      const bytes = sizeOf(oldest);
      this.tailBytes -= bytes;
      this.cutBytes += bytes;
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
    for (const record of this.head) if (record.seq > after) yield record;
    if (this.cutRecords && this.lastCutSeq > after) yield this.cutRecord();
    for (let i = this.tailStart; i < this.tail.length; i++) if (this.tail[i].seq > after) yield this.tail[i];
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

/** Output bytes a record holds, without decoding a chunk that carries its bytes. */
function sizeOf(record: BuildRecord): number {
  if (record.type !== 'output') return 0;
  const { bytes } = record as { bytes?: Buffer };
  return bytes ? bytes.length : Buffer.byteLength(record.data);
}
