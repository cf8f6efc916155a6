import { Writable } from 'node:stream';
import type { Redactor } from './redact.js';

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

/** A partial line (a prompt, a progress bar) is shown after this long without a newline. */
const PARTIAL_LINE_DELAY_MS = 100;

/**
 * A line-buffered, redacting stream over a target that it never ends (the SSH channel
 * must still send the exit status after the build's output). It works on bytes, splitting
 * at newlines (never inside a UTF-8 character), so output without secrets passes without a
 * copy. Backpressure from the target propagates: write callbacks wait for 'drain', so a slow
 * client slows the build's output instead of growing a buffer here.
 */
export class RedactingStream extends Writable {
  private pending: Buffer = Buffer.alloc(0);
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: Sink,
    private readonly redactor: Redactor,
  ) {
    super({ highWaterMark: 64 * 1024 });
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    const data = this.pending.length ? Buffer.concat([this.pending, chunk]) : chunk;
    const lastNewline = data.lastIndexOf(0x0a);
    this.pending = data.subarray(lastNewline + 1);
    this.schedulePartialFlush();
    this.forward(data.subarray(0, lastNewline + 1), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    clearTimeout(this.timer);
    const rest = this.pending;
    this.pending = Buffer.alloc(0);
    this.forward(rest, done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.timer);
    done(err);
  }

  private schedulePartialFlush(): void {
    clearTimeout(this.timer);
    if (!this.pending.length) return;
    this.timer = setTimeout(() => {
      const keep = this.redactor.unsafeTailLength(this.pending);
      const safe = this.pending.subarray(0, this.pending.length - keep);
      this.pending = Buffer.from(this.pending.subarray(safe.length));
      if (safe.length) this.target.write(this.redactor.redactBytes(safe));
    }, PARTIAL_LINE_DELAY_MS);
    this.timer.unref();
  }

  private forward(bytes: Buffer, done: (err?: Error | null) => void): void {
    if (!bytes.length) return done();
    if (this.target.write(this.redactor.redactBytes(bytes))) return done();
    this.target.once('drain', () => done());
  }
}

/** The one writer for everything a user sees; every byte passes the request's redactor. */
export class UserOutput {
  readonly stdout: RedactingStream;
  readonly stderr: RedactingStream;

  constructor(io: BuildIO, readonly redactor: Redactor) {
    this.stdout = new RedactingStream(io.stdout, redactor);
    this.stderr = new RedactingStream(io.stderr, redactor);
  }

  line(text: string): void {
    this.stdout.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  errorLine(text: string): void {
    this.stderr.write(text.endsWith('\n') ? text : `${text}\n`);
  }

  /** Flushes both streams; the targets stay open. */
  async close(): Promise<void> {
    await Promise.all([this.stdout, this.stderr].map((s) => new Promise<void>((resolve) => {
      if (s.writableFinished) return resolve();
      s.once('finish', () => resolve());
      s.once('error', () => resolve());
      s.end();
    })));
  }
}
