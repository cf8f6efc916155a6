import os from 'node:os';
import type { BuildIO, Sink } from '../io/output.js';
import type { BuildRequest } from '../request/types.js';
import { RecordLog } from '../model/record-log.js';
import type { BuildRecord, BuildSource, BuildStatus, BuildSummary, BuildTrigger, OutputRecord, OutputStream } from '../model/build.js';

/**
 * Takes a build's records. A follower that returns false from record() is full: a blocking
 * follower (the caller's own connection: SSH channel, local terminal, HTTP follow) then holds
 * the build's output until it calls the function given to onDrain, so a slow caller slows the
 * build instead of growing a buffer; the others never hold it (they drop themselves when full).
 */
export interface Follower {
  /** `bytes`: the raw output of an output record, for fronts that pass bytes on as they are. */
  record(record: BuildRecord, bytes?: Buffer): boolean | void;
  onDrain?(resume: () => void): void;
}

interface Subscription {
  follower: Follower;
  blocking: boolean;
}

/** Receives every record of every build (history, metrics); must not throw or block. */
export type RecordObserver = (build: Build, record: BuildRecord, bytes?: Buffer) => void;

/** One build: its summary, its records (kept within the log cap) and the followers of both. */
export class Build {
  readonly summary: BuildSummary;
  readonly controller = new AbortController();
  readonly log: RecordLog;
  /** Why the build was aborted, if it was: an explicit cancel, or the server stopping. */
  cancelReason?: string;
  private seq = 0;
  private readonly subscriptions = new Set<Subscription>();
  private readonly full = new Set<Subscription>();
  private drainWaiters: Array<() => void> = [];
  /** The last bytes of a character that a write cut in two, per stream, until the next write completes it. */
  private readonly partial = { stdout: EMPTY, stderr: EMPTY };
  private resolveDone!: (code: number) => void;
  /** The exit code, once the exit record has been sent. */
  readonly done = new Promise<number>((resolve) => (this.resolveDone = resolve));
  /** The build's output as the pipeline writes it: every byte already passed the redacting writer. */
  readonly io: BuildIO = { stdout: this.sink('stdout'), stderr: this.sink('stderr') };

  constructor(
    readonly id: string,
    /** Held while the build is alive only; never stored, never shown. */
    readonly request: BuildRequest,
    source: BuildSource,
    logCapBytes: number,
    private readonly observe: RecordObserver,
    trigger?: BuildTrigger,
  ) {
    this.log = new RecordLog(logCapBytes);
    this.summary = {
      id,
      service_id: request.serviceId,
      repo: request.repo.displayUrl,
      revision: request.revision,
      image: request.image,
      tags: [...request.tags],
      status: 'queued',
      exit_code: null,
      source,
      ...(trigger ? { trigger } : {}),
      created_at: new Date().toISOString(),
      steps: [],
      output_bytes: { stdout: 0, stderr: 0 },
      host: os.hostname(),
      pid: process.pid,
    };
  }

  get status(): BuildStatus {
    return this.summary.status;
  }

  get lastSeq(): number {
    return this.seq;
  }

  /**
   * Sends the kept records after `after`, then every new one until the exit record. Returns
   * the unsubscribe function; a follower of a finished build gets the replay only.
   */
  subscribe(follower: Follower, options: { after?: number; blocking?: boolean } = {}): () => void {
    for (const record of this.log.replay(options.after ?? 0)) follower.record(record);
    if (this.summary.exit_code !== null) return () => {};
    const subscription: Subscription = { follower, blocking: options.blocking ?? false };
    this.subscriptions.add(subscription);
    return () => {
      this.subscriptions.delete(subscription);
      this.drained(subscription);
    };
  }

  /** Adds a record: numbered, kept, sent to the followers and observers. */
  emit<R extends BuildRecord>(fields: DistributiveOmit<R, 'seq' | 'time'>, bytes?: Buffer): boolean {
    const record = { seq: ++this.seq, time: new Date().toISOString(), ...fields } as BuildRecord;
    return this.send(record, bytes);
  }

  private send(record: BuildRecord, bytes?: Buffer): boolean {
    this.log.append(record);
    this.observe(this, record, bytes);
    let room = true;
    for (const subscription of [...this.subscriptions]) {
      if (subscription.follower.record(record, bytes) !== false || !subscription.blocking) continue;
      room = false;
      if (this.full.has(subscription)) continue;
      this.full.add(subscription);
      subscription.follower.onDrain?.(() => this.drained(subscription));
    }
    return room;
  }

  /** Ends the build's record stream with the exit record. */
  finish(code: number, status: BuildStatus): void {
    for (const stream of ['stdout', 'stderr'] as const) {
      const rest = this.partial[stream];
      this.partial[stream] = EMPTY;
      if (rest.length) this.send(new OutputChunk(++this.seq, stream, rest), rest);
    }
    this.summary.status = status;
    this.summary.exit_code = code;
    this.summary.finished_at = new Date().toISOString();
    if (this.summary.started_at) this.summary.duration = seconds(Date.parse(this.summary.finished_at) - Date.parse(this.summary.started_at));
    if (this.log.cutBytes) this.summary.log_cut_bytes = this.log.cutBytes;
    this.emit({ type: 'exit', code, status });
    this.subscriptions.clear();
    this.full.clear();
    this.fireDrain();
    this.resolveDone(code);
  }

  private sink(stream: OutputStream): Sink {
    return {
      write: (chunk) => {
        let bytes = typeof chunk === 'string' ? Buffer.from(chunk) : chunk;
        if (!bytes.length) return true;
        this.summary.output_bytes[stream] += bytes.length;
        if (this.partial[stream].length) bytes = Buffer.concat([this.partial[stream], bytes]);
        const whole = completeCharacters(bytes);
        this.partial[stream] = whole < bytes.length ? Buffer.from(bytes.subarray(whole)) : EMPTY;
        if (!whole) return true;
        const part = whole < bytes.length ? bytes.subarray(0, whole) : bytes;
        return this.send(new OutputChunk(++this.seq, stream, part), part);
      },
      once: (_event, listener) => {
        if (this.full.size === 0) listener();
        else this.drainWaiters.push(listener);
      },
    };
  }

  private drained(subscription: Subscription): void {
    if (!this.full.delete(subscription)) return;
    if (this.full.size === 0) this.fireDrain();
  }

  private fireDrain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    waiters.forEach((w) => w());
  }
}

export const seconds = (ms: number) => Math.round(ms) / 1000;

const EMPTY = Buffer.alloc(0);

/**
 * An output record over the bytes as they came: the text is decoded only when someone reads it
 * (a JSON reader, the stored log), so the SSH path, which passes bytes on, pays nothing for it.
 * Chunks end on whole characters (see completeCharacters), so each decodes on its own.
 */
export class OutputChunk implements OutputRecord {
  readonly type = 'output' as const;
  readonly time = new Date().toISOString();

  constructor(readonly seq: number, readonly stream: OutputStream, readonly bytes: Buffer) {}

  get data(): string {
    return this.bytes.toString('utf8');
  }

  toJSON(): OutputRecord {
    return { seq: this.seq, time: this.time, type: 'output', stream: this.stream, data: this.data };
  }
}

/** How many leading bytes hold only whole UTF-8 characters: a character cut at the end waits for its rest. */
export function completeCharacters(bytes: Buffer): number {
  let start = bytes.length - 1;
  // Back over at most three continuation bytes to the lead byte of the last character.
  while (start >= 0 && bytes.length - start <= 3 && (bytes[start] & 0xc0) === 0x80) start--;
  if (start < 0) return bytes.length;
  const lead = bytes[start];
  const length = lead >= 0xf0 ? 4 : lead >= 0xe0 ? 3 : lead >= 0xc0 ? 2 : 1;
  return bytes.length - start < length && lead >= 0xc0 && lead < 0xf8 ? start : bytes.length;
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
