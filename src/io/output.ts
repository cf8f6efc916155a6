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

/** A sink that can gather the writes of one tick into one: a writable stream. */
export interface BatchingSink extends Sink {
  cork(): void;
  uncork(): void;
}

const EMPTY = Buffer.alloc(0);

/**
 * A redacting stream over a target that it never ends (the SSH channel must still send the
 * exit status after the build's output). Bytes pass at once, uncopied when the stream is not
 * corked, except a tail that could be the start of a secret, held until the next write decides
 * it. Writes gathered while corked go out as one, so the SSH channel sends full packets.
 * Backpressure from the target propagates: write callbacks wait for 'drain', so a slow client
 * slows the build's output instead of growing a buffer here.
 */
export class RedactingStream extends Writable implements BatchingSink {
  private held: Buffer = EMPTY;
  private lastWritten: 'none' | 'newline' | 'text' = 'none';

  constructor(
    private readonly target: Sink,
    private readonly redactor: Redactor,
  ) {
    // Room for a whole engine read (64 KB) of corked writes without signalling backpressure.
    super({ highWaterMark: 256 * 1024 });
  }

  /** Whether the last byte written into this stream (not yet necessarily sent) ended a line. */
  get midLine(): boolean {
    return this.lastWritten === 'text';
  }

  override write(chunk: string | Buffer, ...rest: unknown[]): boolean {
    if (chunk.length) this.lastWritten = chunk[chunk.length - 1] === '\n' || chunk[chunk.length - 1] === 0x0a ? 'newline' : 'text';
    return (super.write as (chunk: unknown, ...rest: unknown[]) => boolean)(chunk, ...rest);
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.pass(this.held.length ? Buffer.concat([this.held, chunk]) : chunk, done);
  }

  override _writev(chunks: Array<{ chunk: Buffer }>, done: (err?: Error | null) => void): void {
    this.pass(Buffer.concat([this.held, ...chunks.map((c) => c.chunk)]), done);
  }

  override _final(done: (err?: Error | null) => void): void {
    const rest = this.held;
    this.held = EMPTY;
    this.forward(rest, done);
  }

  private pass(data: Buffer, done: (err?: Error | null) => void): void {
    const keep = this.redactor.unsafeTailLength(data);
    // A copy, so the held bytes do not pin the whole chunk they came in.
    this.held = keep ? Buffer.from(data.subarray(data.length - keep)) : EMPTY;
    this.forward(data.subarray(0, data.length - keep), done);
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

  /** Writes a line of its own, after ending a line the build left unfinished. */
  line(text: string): void {
    writeLine(this.stdout, text);
  }

  errorLine(text: string): void {
    writeLine(this.stderr, text);
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

function writeLine(stream: RedactingStream, text: string): void {
  stream.write(`${stream.midLine ? '\n' : ''}${text}${text.endsWith('\n') ? '' : '\n'}`);
}
