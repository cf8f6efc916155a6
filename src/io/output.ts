import { EventEmitter } from 'node:events';
import { REDACTED_BYTES, type Redactor } from './redact.js';

/** The part of a writable stream the writer uses: write, and wait for 'drain' when full. */
export interface Sink {
  write(chunk: string | Buffer): boolean;
  once(event: 'drain', listener: () => void): unknown;
}

/** Where a build writes: the SSH channel's two streams, or the process's. */
export interface BuildIO {
  stdout: Sink;
  stderr: Sink;
}

/** A sink that can gather the writes of one tick into one: a writable stream. */
export interface BatchingSink extends Sink {
  cork(): void;
  uncork(): void;
}

type StreamIndex = 0 | 1;

/** Bytes of one stream, in the order they were written; open while they may still be part of a secret. */
interface Piece {
  to: StreamIndex;
  bytes: Buffer;
  open: boolean;
}

/**
 * Output waiting behind a held tail is let go, held tail included, past either bound: a build
 * that holds a possible secret prefix on one stream and floods the other must neither grow the
 * server's memory nor stall (the engine's stream, and so both of the build's streams, would be
 * paused for a byte that can only come through it). Nothing waiting here slows the engine's
 * stream: the build cannot time its own writes to learn whether something was held.
 */
const MAX_WAITING_BYTES = 256 * 1024;
const MAX_WAITING_PIECES = 1024;

/**
 * Redacts both streams of one build's output in one ordered queue, so that redaction never
 * changes the order in which stdout and stderr bytes reach the client. Bytes pass at once
 * (partial lines show without waiting for a newline), except a tail of one stream that could
 * begin a secret: it is held until the next bytes of that stream decide it, and everything
 * written after it, on either stream, waits behind it. Holding one stream while the other went
 * on was an oracle: a build printing a guess on stdout and a marker on stderr learned from
 * their order in the merged log whether the guess began a secret.
 *
 * What it leaves: a held tail still delays what follows it, so a log that timestamps each line
 * shows that delay.
 */
class OrderedRedaction {
  /** Pieces not sent yet, in the order they were written. Open pieces of a stream are its last ones. */
  private queue: Piece[] = [];
  /** Bytes in the queue. */
  private queued = 0;
  private corked = 0;
  private readonly blocked = new Set<Sink>();
  private drainWaiters: Array<() => void> = [];

  constructor(
    private readonly targets: readonly [Sink, Sink],
    private readonly redactor: Redactor,
  ) {}

  get isBlocked(): boolean {
    return this.blocked.size > 0;
  }

  write(to: StreamIndex, bytes: Buffer): void {
    if (!bytes.length) return;
    if (this.queue.length === 0 && !this.corked) {
      // The usual case: nothing is held, the chunk goes out uncopied, as one write.
      const keep = this.redactor.unsafeTailLength(bytes);
      if (keep < bytes.length) this.send(to, this.redactor.redactBytes(keep ? bytes.subarray(0, bytes.length - keep) : bytes));
      // A copy, so the held bytes do not pin the whole chunk they came in.
      if (keep) {
        this.queue.push({ to, bytes: Buffer.from(bytes.subarray(bytes.length - keep)), open: true });
        this.queued = keep;
      }
      return;
    }
    this.queue.push({ to, bytes, open: true });
    this.queued += bytes.length;
    this.decide(to, false);
    this.settle();
  }

  /** Sends what can go; past the bounds, the held tails are let go first. */
  private settle(): void {
    // While corked the queue only gathers one engine read, whatever its bounds.
    if (this.corked) return;
    if (this.queue.length > MAX_WAITING_PIECES || this.queued > MAX_WAITING_BYTES) {
      this.decide(0, true);
      this.decide(1, true);
    }
    this.flush();
  }

  /** No more bytes on this stream: what it holds is decided as it is. */
  end(to: StreamIndex): void {
    this.decide(to, true);
    this.settle();
  }

  cork(): void {
    this.corked++;
  }

  uncork(): void {
    if (this.corked > 0 && --this.corked === 0) this.settle();
  }

  /** Runs fn once no target is full (at once when none is). */
  whenDrained(fn: () => void): void {
    if (this.blocked.size) this.drainWaiters.push(fn);
    else fn();
  }

  /**
   * Redacts the open pieces of one stream as one run of bytes: what can no longer be the start
   * of a secret is decided (a secret becomes *** in the piece where it began, and is cut out of
   * the pieces it spans), the rest stays open where it was written.
   */
  private decide(to: StreamIndex, final: boolean): void {
    // The open pieces of a stream are its last ones: found from the end, usually at once.
    const open: number[] = [];
    for (let i = this.queue.length - 1; i >= 0; i--) {
      const piece = this.queue[i];
      if (piece.to !== to) continue;
      if (!piece.open) break;
      open.push(i);
    }
    if (!open.length) return;
    if (open.length === 1) return this.decideOne(open[0], final);
    open.reverse();
    const run = open.length === 1 ? this.queue[open[0]].bytes : Buffer.concat(open.map((i) => this.queue[i].bytes));
    const cut = final ? run.length : run.length - this.redactor.unsafeTailLength(run);
    const bounds = [0];
    for (const i of open) bounds.push(bounds.at(-1)! + this.queue[i].bytes.length);
    const decided: Buffer[][] = open.map(() => []);
    let k = 0;
    const pieceAt = (offset: number) => {
      while (bounds[k + 1] <= offset) k++;
      return k;
    };
    const literal = (from: number, to: number) => {
      while (from < to) {
        const end = Math.min(to, bounds[pieceAt(from) + 1]);
        decided[k].push(run.subarray(from, end));
        from = end;
      }
    };
    let pos = 0;
    for (const [start, end] of this.redactor.secretRanges(run.subarray(0, cut))) {
      literal(pos, start);
      decided[pieceAt(start)].push(REDACTED_BYTES);
      pos = end;
    }
    literal(pos, cut);

    // Replaced in place, the last first so that the earlier indexes hold; the last piece, usually
    // the only one, is replaced without moving the rest of the queue.
    for (let n = open.length - 1; n >= 0; n--) {
      const replacement: Piece[] = [];
      const parts = decided[n];
      if (parts.length) replacement.push({ to, bytes: parts.length === 1 ? parts[0] : Buffer.concat(parts), open: false });
      const from = Math.max(bounds[n], cut);
      if (from < bounds[n + 1]) replacement.push({ to, bytes: Buffer.from(run.subarray(from, bounds[n + 1])), open: true });
      for (const piece of replacement) this.queued += piece.bytes.length;
      this.queued -= this.queue[open[n]].bytes.length;
      if (replacement.length === 1) this.queue[open[n]] = replacement[0];
      else this.queue.splice(open[n], 1, ...replacement);
    }
  }

  /** decide() for the usual case of one open piece, without the bookkeeping of a run across pieces. */
  private decideOne(at: number, final: boolean): void {
    const piece = this.queue[at];
    const cut = final ? piece.bytes.length : piece.bytes.length - this.redactor.unsafeTailLength(piece.bytes);
    const replacement: Piece[] = [];
    if (cut > 0) replacement.push({ to: piece.to, bytes: this.redactor.redactBytes(piece.bytes.subarray(0, cut)), open: false });
    if (cut < piece.bytes.length) replacement.push({ to: piece.to, bytes: Buffer.from(piece.bytes.subarray(cut)), open: true });
    this.queued -= piece.bytes.length;
    for (const p of replacement) this.queued += p.bytes.length;
    if (replacement.length === 1) this.queue[at] = replacement[0];
    else this.queue.splice(at, 1, ...replacement);
  }

  /** Sends the decided pieces at the front, each run of one stream as one write. */
  private flush(): void {
    if (this.corked) return;
    let sent = 0;
    while (sent < this.queue.length && !this.queue[sent].open) {
      const to = this.queue[sent].to;
      let end = sent;
      while (end < this.queue.length && !this.queue[end].open && this.queue[end].to === to) end++;
      const run = this.queue.slice(sent, end).map((p) => p.bytes);
      const bytes = run.length === 1 ? run[0] : Buffer.concat(run);
      this.queued -= bytes.length;
      this.send(to, bytes);
      sent = end;
    }
    if (sent) this.queue = sent === this.queue.length ? [] : this.queue.slice(sent);
  }

  private send(to: StreamIndex, bytes: Buffer): void {
    if (!bytes.length) return;
    const target = this.targets[to];
    if (target.write(bytes) || this.blocked.has(target)) return;
    this.blocked.add(target);
    target.once('drain', () => {
      this.blocked.delete(target);
      if (this.blocked.size) return;
      const waiters = this.drainWaiters;
      this.drainWaiters = [];
      waiters.forEach((fn) => fn());
    });
  }
}

/**
 * One stream of a build's output (stdout or stderr), redacting into a target it never ends (the
 * SSH channel must still send the exit status after the build's output). Writes are taken in
 * order at once; write() returns false while a target is full, and 'drain' follows, so a slow
 * client slows the build's output instead of growing a buffer here.
 */
export class RedactingStream extends EventEmitter implements BatchingSink {
  private lastWritten: 'none' | 'newline' | 'text' = 'none';
  private ended = false;
  private waitingForDrain = false;
  private readonly merger: OrderedRedaction;
  private readonly index: StreamIndex;

  /** A stream of its own; UserOutput makes two that share one queue. */
  constructor(target: Sink, redactor: Redactor, shared?: { merger: OrderedRedaction; index: StreamIndex }) {
    super();
    this.merger = shared?.merger ?? new OrderedRedaction([target, target], redactor);
    this.index = shared?.index ?? 0;
  }

  /** Whether the last byte written into this stream (not yet necessarily sent) ended a line. */
  get midLine(): boolean {
    return this.lastWritten === 'text';
  }

  get writableEnded(): boolean {
    return this.ended;
  }

  get writableFinished(): boolean {
    return this.ended && !this.merger.isBlocked;
  }

  write(chunk: string | Buffer, callback?: (err?: Error | null) => void): boolean {
    const bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
    if (bytes.length) this.lastWritten = bytes[bytes.length - 1] === 0x0a ? 'newline' : 'text';
    this.merger.write(this.index, bytes);
    if (callback) this.merger.whenDrained(() => process.nextTick(callback));
    if (!this.merger.isBlocked) return true;
    if (!this.waitingForDrain) {
      this.waitingForDrain = true;
      this.merger.whenDrained(() => {
        this.waitingForDrain = false;
        this.emit('drain');
      });
    }
    return false;
  }

  cork(): void {
    this.merger.cork();
  }

  uncork(): void {
    this.merger.uncork();
  }

  /** Sends what this stream still holds; the target stays open. Calls back once the targets took it all. */
  end(callback?: () => void): this {
    if (!this.ended) {
      this.ended = true;
      this.merger.end(this.index);
    }
    this.merger.whenDrained(() => {
      this.emit('finish');
      callback?.();
    });
    return this;
  }
}

/** The one writer for everything a user sees; every byte passes the request's redactor. */
export class UserOutput {
  readonly stdout: RedactingStream;
  readonly stderr: RedactingStream;

  constructor(io: BuildIO, readonly redactor: Redactor) {
    const merger = new OrderedRedaction([io.stdout, io.stderr], redactor);
    this.stdout = new RedactingStream(io.stdout, redactor, { merger, index: 0 });
    this.stderr = new RedactingStream(io.stderr, redactor, { merger, index: 1 });
  }

  /** Writes a line of its own, after ending a line the build left unfinished. */
  line(text: string): void {
    writeLine(this.stdout, text);
  }

  errorLine(text: string): void {
    writeLine(this.stderr, text);
  }

  /** Flushes both streams; the targets stay open. */
  async close(): Promise<void> {
    await Promise.all([this.stdout, this.stderr].map((s) => new Promise<void>((resolve) => s.end(resolve))));
  }
}

function writeLine(stream: RedactingStream, text: string): void {
  stream.write(`${stream.midLine ? '\n' : ''}${text}${text.endsWith('\n') ? '' : '\n'}`);
}
