import { Writable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
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
 * must still send the exit status after the build's output). Backpressure from the
 * target propagates: write callbacks wait for 'drain', so a slow client slows the build's
 * output instead of growing a buffer here.
 */
export class RedactingStream extends Writable {
  private readonly decoder = new StringDecoder('utf8');
  private pending = '';
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly target: Sink,
    private readonly redactor: Redactor,
  ) {
    super({ decodeStrings: false, highWaterMark: 64 * 1024 });
  }

  override _write(chunk: Buffer | string, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.pending += typeof chunk === 'string' ? chunk : this.decoder.write(chunk);
    const lastNewline = this.pending.lastIndexOf('\n');
    let ready = '';
    if (lastNewline >= 0) {
      ready = this.pending.slice(0, lastNewline + 1);
      this.pending = this.pending.slice(lastNewline + 1);
    }
    this.schedulePartialFlush();
    this.emitText(ready, done);
  }

  override _final(done: (err?: Error | null) => void): void {
    clearTimeout(this.timer);
    const rest = this.pending + this.decoder.end();
    this.pending = '';
    this.emitText(rest, done);
  }

  override _destroy(err: Error | null, done: (err?: Error | null) => void): void {
    clearTimeout(this.timer);
    done(err);
  }

  private schedulePartialFlush(): void {
    clearTimeout(this.timer);
    if (!this.pending) return;
    this.timer = setTimeout(() => {
      const keep = this.redactor.unsafeTailLength(this.pending);
      const safe = this.pending.slice(0, this.pending.length - keep);
      this.pending = this.pending.slice(safe.length);
      if (safe) this.target.write(this.redactor.redact(safe));
    }, PARTIAL_LINE_DELAY_MS);
    this.timer.unref();
  }

  private emitText(text: string, done: (err?: Error | null) => void): void {
    if (!text) return done();
    if (this.target.write(this.redactor.redact(text))) return done();
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
