import type { IncomingMessage, ServerResponse } from 'node:http';
import { HTTP_LIMIT_DEFAULTS, RETRY_AFTER_SECONDS, type HttpLimits, type StreamGate } from './limits.js';
import type { Build } from '../../service/build.js';
import type { History } from '../../store/files/history.js';
import { recordFrame } from '../../model/record-frames.js';
import { recordJson, writeText, type JsonText } from '../../model/record-json.js';
import { isFinal, type BuildRecord, type BuildSummary } from '../../model/build.js';

/** How a stream shows a record: a line of NDJSON, an SSE event, log text; '' to skip it. */
export type RecordFormat = (record: BuildRecord) => JsonText;

/** How much one reader may hold of the server: bytes not yet taken by the kernel, and for how long. */
export interface ReaderLimits {
  windowBytes: number;
  idleReaderMs: number;
}

/**
 * A format whose results are shared by every reader for a while: readers of one build catch up
 * side by side (a page opened by many, a burst of reconnects), and each would serialize the same
 * records again. The newest results are kept, 8 MB of them at most.
 */
function sharedFormat(format: RecordFormat, maxBytes = 8 * 1024 * 1024): RecordFormat {
  const cache = new WeakMap<BuildRecord, JsonText>();
  const order: Array<{ record: BuildRecord; size: number }> = [];
  let bytes = 0;
  return (record) => {
    let text = cache.get(record);
    if (text === undefined) {
      text = format(record);
      const size = typeof text === 'string' ? text.length : Buffer.isBuffer(text) ? text.length : text.latin1.length;
      cache.set(record, text);
      order.push({ record, size });
      bytes += size;
      while (bytes > maxBytes && order.length > 1) {
        const oldest = order.shift()!;
        cache.delete(oldest.record);
        bytes -= oldest.size;
      }
    }
    return text;
  };
}

export const NDJSON_FORMAT = sharedFormat((r) => recordJson(r));
export const SSE_FORMAT = sharedFormat((r) => recordJson(r, `id: ${r.seq}\ndata: `, '\n\n'));
export const FRAMES_FORMAT = sharedFormat(recordFrame);

/** What opening a stream needs of the HTTP server (a subset of HttpDeps). */
export interface StreamDeps {
  gate?: StreamGate;
  limits?: Partial<HttpLimits>;
  heartbeatMs?: number;
}

/**
 * Counts a stream for its token and the client's address until its response closes; past a
 * limit, sets Retry-After and returns the message of the 429 the front sends in its own form.
 */
export function admitStream(req: IncomingMessage, res: ServerResponse, deps: StreamDeps, tokenId: string): string | undefined {
  const refused = deps.gate?.admit(req, res, tokenId);
  if (!refused) return undefined;
  res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
  return deps.gate!.refusal(refused);
}

/** The pacer of a stream whose head was sent; `heartbeat` is written every heartbeatMs while nothing waits. */
export function pacerFor(res: ServerResponse, deps: StreamDeps, heartbeat?: JsonText): Pacer {
  const limits = { ...HTTP_LIMIT_DEFAULTS, ...deps.limits };
  const gate = deps.gate;
  return new Pacer(res, limits, heartbeat === undefined ? undefined : { ms: deps.heartbeatMs ?? 15_000, text: heartbeat }, gate && (() => gate.dropped++));
}

/**
 * A response written under a backpressure of its own: `windowBytes` at most handed to the
 * socket and not yet taken by the kernel (each write's callback says when it was), whatever
 * the response's highWaterMark. A reader that takes none of
 * what waits for it for `idleReaderMs` is closed; a heartbeat is written only when nothing
 * waits, and its flushing is no progress, so a reader that reads nothing is dropped however
 * often the stream beats.
 */
export class Pacer {
  private inFlight = 0;
  private lastProgress = Date.now();
  private lastWrite = Date.now();
  private corked = false;
  private waiter?: () => void;
  private readonly timer: NodeJS.Timeout;
  /** Whether the reader was dropped for taking nothing (the caller logs nothing: it is the reader's choice). */
  dropped = false;

  constructor(private readonly res: ServerResponse, private readonly limits: ReaderLimits, heartbeat?: { ms: number; text: JsonText }, onDrop?: () => void) {
    const tick = Math.max(50, Math.min((heartbeat?.ms ?? Infinity) / 2, limits.idleReaderMs / 4));
    this.timer = setInterval(() => {
      const now = Date.now();
      if (this.inFlight > 0 && now - this.lastProgress > limits.idleReaderMs) {
        this.dropped = true;
        onDrop?.();
        res.destroy();
        return;
      }
      // Only on a quiet stream (records say it is alive as well), and not counted: it is no progress.
      if (heartbeat && this.inFlight === 0 && now - this.lastWrite >= heartbeat.ms - tick / 2 && !this.closed) {
        this.write(heartbeat.text, true);
      }
    }, tick);
    this.timer.unref();
    res.once('close', () => {
      clearInterval(this.timer);
      this.wake();
    });
  }

  /** Whether more may be written now. */
  get hasRoom(): boolean {
    return this.inFlight < this.limits.windowBytes;
  }

  get closed(): boolean {
    return this.res.destroyed || this.res.writableEnded;
  }

  write(text: JsonText, isHeartbeat = false): void {
    if (text === '' || this.closed) return;
    const size = typeof text === 'string' ? text.length : Buffer.isBuffer(text) ? text.length : text.latin1.length;
    this.lastWrite = Date.now();
    if (this.inFlight === 0) this.lastProgress = this.lastWrite;
    this.inFlight += size;
    // Records written in one tick (a catch-up, a burst) leave in one socket write.
    if (!this.corked) {
      this.corked = true;
      this.res.cork();
      process.nextTick(() => {
        this.corked = false;
        this.res.uncork();
      });
    }
    const done = () => {
      this.inFlight -= size;
      if (!isHeartbeat) this.lastProgress = Date.now();
      if (this.inFlight <= this.limits.windowBytes / 2) this.wake();
    };
    if (typeof text === 'string') this.res.write(text, 'utf8', done);
    else if (Buffer.isBuffer(text)) this.res.write(text, done);
    else this.res.write(text.latin1, 'latin1', done);
  }

  /** Resolves once half the window is free again: true, or false when the connection is gone. */
  room(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.inFlight <= this.limits.windowBytes / 2) return Promise.resolve(true);
    return new Promise((resolve) => {
      this.waiter = () => resolve(!this.closed);
    });
  }

  end(): void {
    clearInterval(this.timer);
    if (!this.closed) this.res.end();
  }

  private wake(): void {
    const waiter = this.waiter;
    this.waiter = undefined;
    waiter?.();
  }
}

/**
 * Sends a build of this process: what it kept after `after`, then live until its exit record
 * (or, with `until`, up to that seq). A blocking reader (the caller's own follow) holds the
 * build's output while its connection is slow. Any other goes through a Pacer: it catches up
 * from the build's kept records a window at a time and follows live while it keeps up; when it
 * falls a window behind it leaves the live feed and catches up again from the kept records, so
 * it never holds more than a window, whatever the log's size. A closed connection only unsubscribes.
 */
export function followLive(res: ServerResponse, build: Build, after: number, format: RecordFormat, options: { blocking?: boolean; pacer?: Pacer; until?: number } = {}): Promise<void> {
  if (options.blocking || !options.pacer) return followBlocking(res, build, after, format);
  const pacer = options.pacer;
  const until = options.until ?? Infinity;
  return new Promise<void>((resolve) => {
    let cursor = after;
    let ended = false;
    let unsubscribe = () => {};
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      pacer.end();
      resolve();
    };
    res.once('close', end);
    /** false once the stream is done; afterwards `pacer.hasRoom` says whether to go on. */
    const send = (record: BuildRecord): boolean => {
      cursor = Math.max(cursor, record.seq);
      pacer.write(format(record));
      if (record.type === 'exit' || cursor >= until) {
        end();
        return false;
      }
      return true;
    };
    const catchUp = async (): Promise<void> => {
      while (!ended) {
        let behind = false;
        // A fresh walk after every wait: the kept tail may have moved on (and been cut) meanwhile.
        for (const record of build.log.replay(cursor)) {
          if (!send(record)) return;
          if (!pacer.hasRoom) {
            behind = true;
            break;
          }
        }
        if (!behind) {
          if (build.summary.exit_code !== null || cursor >= until) return end();
          unsubscribe = build.subscribe({
            record(record) {
              if (ended || record.seq <= cursor) return true;
              if (send(record) && !pacer.hasRoom) {
                unsubscribe();
                unsubscribe = () => {};
                void catchUp();
              }
              return true;
            },
          }, { after: cursor });
          return;
        }
        if (!(await pacer.room())) return end();
      }
    };
    void catchUp();
  });
}

/** The caller's own follow: the build waits for its connection (as an SSH channel does). */
function followBlocking(res: ServerResponse, build: Build, after: number, format: RecordFormat): Promise<void> {
  return new Promise<void>((resolve) => {
    let unsubscribe = () => {};
    let ended = false;
    let corked = false;
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      if (!res.writableEnded) res.end();
      resolve();
    };
    res.once('close', end);
    unsubscribe = build.subscribe({
      record(record) {
        if (ended) return true;
        const text = format(record);
        if (text === '') return true;
        if (!corked) {
          corked = true;
          res.cork();
          process.nextTick(() => {
            corked = false;
            res.uncork();
          });
        }
        const ok = writeText(res, text);
        if (record.type === 'exit') end();
        return ok;
      },
      onDrain(resume) {
        if (ended) return resume();
        const go = () => {
          res.off('drain', go);
          res.off('close', go);
          resume();
        };
        res.once('drain', go);
        res.once('close', go);
      },
    }, { after, blocking: true });
    if (ended) unsubscribe();
  });
}

/** How a stream shows a stored line as it is on disk (NDJSON, SSE): what goes before and after it. */
export interface LineFormat {
  prefix(seq: number): string;
  suffix: string;
}

export const NDJSON_LINES: LineFormat = { prefix: () => '', suffix: '\n' };
/** As recordJson(r, `id: ${seq}\ndata: `, '\n\n') writes an SSE event. */
export const SSE_LINES: LineFormat = { prefix: (seq) => `id: ${seq}\ndata: `, suffix: '\n\n' };

/**
 * Sends the stored records of a build that is not live here, a window at a time: with `lines`,
 * each stored line as it is (NDJSON, SSE), else each record through `format`. A finished build
 * with no exit record of its own (abandoned: its process died) gets one, with code null, so
 * every stream ends alike when `closeWithExit`. One still running in another process (a local
 * buildbot.sh sharing the work dir) gets none: the stream ends and the reader comes back after
 * the last seq it saw for what was stored since.
 */
export async function replayStored(pacer: Pacer, summary: BuildSummary, after: number, history: History, format: RecordFormat, closeWithExit: boolean, lines?: LineFormat): Promise<void> {
  let last = after;
  let exited = false;
  const records = lines ? history.replayLines(summary.id, after) : history.replay(summary.id, after);
  for await (const item of records) {
    last = item.seq;
    exited ||= item.type === 'exit';
    if (lines && 'line' in item) {
      pacer.write(lines.prefix(item.seq));
      pacer.write(item.line);
      pacer.write(lines.suffix);
    } else {
      pacer.write(format(item as BuildRecord));
    }
    if (!pacer.hasRoom && !(await pacer.room())) return;
  }
  if (closeWithExit && !exited && isFinal(summary.status)) {
    pacer.write(format({ seq: last + 1, time: summary.finished_at ?? new Date().toISOString(), type: 'exit', code: summary.exit_code, status: summary.status }));
  }
  pacer.end();
}
