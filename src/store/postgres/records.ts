import pg from 'pg';
import type { ServerLog } from '../../log/server-log.js';
import type { BuildRecord, CutRecord } from '../../model/build.js';
import { recordJson, textBytes } from '../../model/record-json.js';
import { CANCELS_CHANNEL, RECORDS_CHANNEL } from './channels.js';
import { describeError, isConnectionError } from './pool.js';

/** A stored record as readers send it: the record's JSON line (no newline), with its seq and type. */
export interface StoredRecord {
  seq: number;
  type: string;
  line: Buffer;
}

/**
 * One statement per batch, for all the builds in it: the rows go in as four arrays (one statement
 * text whatever the batch's size, prepared once per connection, no limit on parameters), and each
 * build gets one NOTIFY with its last seq, sent by the database at commit. One round trip in all.
 * ON CONFLICT DO NOTHING makes a retry safe: a batch whose answer was lost (the connection died
 * after the commit) is sent again and changes nothing.
 */
const INSERT = {
  name: 'buildbot-records-insert',
  text: `WITH written AS (
      INSERT INTO records (build_id, seq, type, payload)
      SELECT * FROM unnest($1::text[], $2::bigint[], $3::text[], $4::bytea[])
      ON CONFLICT (build_id, seq) DO NOTHING
      RETURNING build_id, seq)
    SELECT build_id, pg_notify('${RECORDS_CHANNEL}', build_id || ':' || max(seq)) FROM written GROUP BY build_id`,
};

interface Entry {
  seq: number;
  type: string;
  time: string;
  /** The JSON line; a cut made here gets its line when it is sent (it may still grow). */
  line?: Buffer;
  /** Output bytes the record holds (an output record), or the cut stands for. */
  dataBytes: number;
  /** What it counts against the buffer's bound. */
  weight: number;
  /** A cut made here: how many records it replaces. */
  cutRecords?: number;
  /** Merged into the cut after it: skipped. */
  gone?: boolean;
}

interface Queue {
  entries: Entry[];
  /** Index of the first entry not yet taken into a batch (taking from the front without shifting). */
  start: number;
  /** No droppable output record before this index. */
  dropFrom: number;
}

export interface RecordWriterOptions {
  /** How long records wait to be batched: the issue asks for 100-200 ms. */
  flushMs?: number;
  /** Bound on what waits in memory (JSON bytes) while the database is away; past it output is cut. */
  maxBufferedBytes?: number;
  /** Bounds on one statement; more waiting is sent by further statements at once. */
  maxBatchBytes?: number;
  maxBatchRecords?: number;
  /** Backoff between attempts while the database is away. */
  retryMinMs?: number;
  retryMaxMs?: number;
  log?: ServerLog;
  /** Hides the password in errors that are logged. */
  redact?: (text: string) => string;
}

const CUT_WEIGHT = 128;

/**
 * Writes build records in batches: records wait up to `flushMs`, then one statement writes all
 * that waits (one row each) with one NOTIFY per build. Never a statement or a NOTIFY per line:
 * a NOTIFY takes a database-wide lock at commit.
 *
 * While the database is away, records wait in memory, retried with backoff. Past
 * `maxBufferedBytes` the oldest waiting output of the build is dropped and one `cut` record
 * stands for it, at the seq of the last record it replaces (as RecordLog does), so a reader
 * resuming by seq finds every seq either stored or covered by a cut. Step, queued, exit and cut
 * records are never dropped: few and small. Batches go one at a time and a failed one goes back
 * to the front, so a build's records are stored in seq order and readers never skip one.
 */
export class RecordWriter {
  private readonly queues = new Map<string, Queue>();
  private buffered = 0;
  private pending = 0;
  private timer: NodeJS.Timeout | undefined;
  private running = false;
  private closed = false;
  private failingSince = 0;
  private retryMs: number;
  private readonly idle: Array<() => void> = [];
  private readonly flushMs: number;
  private readonly maxBuffered: number;
  private readonly maxBatchBytes: number;
  private readonly maxBatchRecords: number;

  /** Counted for tests, /metrics and /healthz. */
  readonly stats = { statements: 0, records: 0, failures: 0, droppedRecords: 0, droppedBytes: 0 };

  constructor(private readonly pool: pg.Pool, private readonly options: RecordWriterOptions = {}) {
    this.flushMs = options.flushMs ?? 150;
    this.maxBuffered = options.maxBufferedBytes ?? 16 * 1024 * 1024;
    this.maxBatchBytes = options.maxBatchBytes ?? 1024 * 1024;
    this.maxBatchRecords = options.maxBatchRecords ?? 5000;
    this.retryMs = options.retryMinMs ?? 200;
  }

  /** Whether the last attempt to write failed (the database is away): for /healthz's degraded. */
  get degraded(): boolean {
    return this.failingSince > 0;
  }

  /** JSON bytes waiting (a batch on its way included), held within maxBufferedBytes by cutting. */
  get bufferedBytes(): number {
    return this.buffered;
  }

  /** Records waiting to be written. */
  get waiting(): number {
    return this.pending;
  }

  /** Takes a record of a build; never waits, never throws. Records of a build come in seq order. */
  append(buildId: string, record: BuildRecord): void {
    if (this.closed) return;
    let queue = this.queues.get(buildId);
    if (!queue) this.queues.set(buildId, (queue = { entries: [], start: 0, dropFrom: 0 }));
    const line = textBytes(recordJson(record, '', ''));
    const dataBytes = record.type === 'output' ? Buffer.byteLength(record.data) : record.type === 'cut' ? record.bytes : 0;
    queue.entries.push({ seq: record.seq, type: record.type, time: record.time, line, dataBytes, weight: line.length, ...(record.type === 'cut' ? { cutRecords: record.records } : {}) });
    this.buffered += line.length;
    this.pending++;
    if (this.buffered > this.maxBuffered) this.cut(buildId);
    this.schedule(this.flushMs);
  }

  /**
   * Resolves true once everything appended so far is written, false past `timeoutMs` (the
   * database is away). Sends what waits at once, unless the writer is backing off after a failure.
   */
  drain(timeoutMs = 10_000): Promise<boolean> {
    if (!this.pending && !this.running) return Promise.resolve(true);
    if (!this.failingSince && this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
      this.schedule(0);
    }
    return new Promise((resolve) => {
      const waiter = () => {
        clearTimeout(timeout);
        resolve(true);
      };
      const timeout = setTimeout(() => {
        this.idle.splice(this.idle.indexOf(waiter) >>> 0, 1);
        resolve(false);
      }, timeoutMs);
      this.idle.push(waiter);
    });
  }

  /** Writes what waits (within `timeoutMs`) and takes no more records. */
  async close(timeoutMs = 10_000): Promise<boolean> {
    const done = await this.drain(timeoutMs);
    this.closed = true;
    clearTimeout(this.timer);
    return done;
  }

  private schedule(delayMs: number): void {
    if (this.timer || this.running || this.closed) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.pump();
    }, delayMs);
  }

  private async pump(): Promise<void> {
    this.running = true;
    let failed = false;
    try {
      // Several statements in a row only when a batch was full: otherwise the next waits flushMs.
      while (this.pending && (await this.sendBatch())) {
        /* full batch: send the next one */
      }
    } catch (err) {
      failed = true;
      this.stats.failures++;
      if (!this.failingSince) {
        this.failingSince = Date.now();
        this.options.log?.('database-records-waiting', { error: this.describe(err), waiting: this.pending });
      }
    } finally {
      this.running = false;
    }
    if (failed) {
      const wait = this.retryMs;
      this.retryMs = Math.min(this.retryMs * 2, this.options.retryMaxMs ?? 5_000);
      this.schedule(wait * (0.75 + Math.random() / 2));
      return;
    }
    if (this.failingSince) {
      this.options.log?.('database-records-written', { after_ms: Date.now() - this.failingSince, dropped_records: this.stats.droppedRecords });
      this.failingSince = 0;
      this.retryMs = this.options.retryMinMs ?? 200;
    }
    if (this.pending) this.schedule(this.flushMs);
    else for (const resolve of this.idle.splice(0)) resolve();
  }

  /** Sends one batch; true when it was full (more may wait). Throws when it could not be written. */
  private async sendBatch(): Promise<boolean> {
    const ids: string[] = [];
    const seqs: number[] = [];
    const types: string[] = [];
    const payloads: Buffer[] = [];
    const taken = new Map<string, Entry[]>();
    let bytes = 0;
    let full = false;
    for (const [id, queue] of this.queues) {
      const from = queue.start;
      while (queue.start < queue.entries.length) {
        if (bytes >= this.maxBatchBytes || ids.length >= this.maxBatchRecords) {
          full = true;
          break;
        }
        const entry = queue.entries[queue.start++];
        if (entry.gone) continue;
        const line = entry.line ?? cutLine(entry);
        ids.push(id);
        seqs.push(entry.seq);
        types.push(entry.type);
        payloads.push(line);
        bytes += line.length;
      }
      taken.set(id, queue.entries.slice(from, queue.start));
      if (queue.start === queue.entries.length) this.queues.delete(id);
      else if (queue.start > 1024 && queue.start * 2 > queue.entries.length) {
        // A build that writes faster than a batch holds keeps its queue: what was sent goes.
        queue.entries = queue.entries.slice(queue.start);
        queue.dropFrom = Math.max(0, queue.dropFrom - queue.start);
        queue.start = 0;
      }
      if (full) break;
    }
    if (!ids.length) return false;
    try {
      this.stats.statements++;
      await this.pool.query({ ...INSERT, values: [ids, seqs, types, payloads] });
      this.stats.records += ids.length;
    } catch (err) {
      // Back to the front of their queues, in order, where they may be cut. They counted against
      // the bound while they were away (records coming meanwhile were cut for them), so it holds.
      for (const [id, entries] of taken) {
        const queue = this.queues.get(id);
        const rest = queue ? queue.entries.slice(queue.start) : [];
        this.queues.delete(id); // re-inserted: the map's order is the order of sending
        this.queues.set(id, { entries: this.mergeCuts([...entries, ...rest]), start: 0, dropFrom: 0 });
      }
      if (!isConnectionError(err)) this.options.log?.('database-records-failed', { error: this.describe(err) });
      throw err;
    }
    for (const entries of taken.values()) {
      for (const e of entries) {
        if (e.gone) continue;
        this.buffered -= e.weight;
        this.pending--;
      }
    }
    return full;
  }

  /**
   * One cut where two made here meet: output cut while a batch was away (its own cut with it)
   * and output cut from the records that came meanwhile are one stretch again once it is back.
   */
  private mergeCuts(entries: Entry[]): Entry[] {
    let previous: Entry | undefined;
    for (const entry of entries) {
      if (entry.gone) continue;
      const mine = entry.type === 'cut' && entry.line === undefined;
      if (mine && previous) {
        entry.dataBytes += previous.dataBytes;
        entry.cutRecords = (entry.cutRecords ?? 1) + (previous.cutRecords ?? 1);
        previous.gone = true;
        this.buffered -= previous.weight;
        this.pending--;
      }
      previous = mine ? entry : undefined;
    }
    return entries;
  }

  /** Drops waiting output, oldest first, this build's then others', until within the bound. */
  private cut(preferred: string): void {
    const order = [preferred, ...[...this.queues.keys()].filter((id) => id !== preferred)];
    for (const id of order) {
      const queue = this.queues.get(id);
      if (!queue) continue;
      while (this.buffered > this.maxBuffered && this.dropOldest(queue)) {
        /* dropped one */
      }
      if (this.buffered <= this.maxBuffered) return;
    }
  }

  /** Replaces the oldest waiting output record of a queue by a cut (merged into one just before it). */
  private dropOldest(queue: Queue): boolean {
    const entries = queue.entries;
    let i = Math.max(queue.dropFrom, queue.start);
    while (i < entries.length && (entries[i].gone || entries[i].type !== 'output')) i++;
    queue.dropFrom = i;
    // The newest record stays: it is what a reader most wants to see, and keeps the cut before it.
    if (i >= entries.length - 1) return false;
    const dropped = entries[i];
    let before = i - 1;
    while (before >= queue.start && entries[before].gone) before--;
    const previous = before >= queue.start ? entries[before] : undefined;
    const merged = previous?.type === 'cut' && previous.line === undefined ? previous : undefined;
    entries[i] = {
      seq: dropped.seq,
      time: dropped.time,
      type: 'cut',
      dataBytes: dropped.dataBytes + (merged?.dataBytes ?? 0),
      cutRecords: 1 + (merged?.cutRecords ?? 0),
      weight: CUT_WEIGHT,
    };
    this.buffered += CUT_WEIGHT - dropped.weight;
    if (merged) {
      merged.gone = true;
      this.buffered -= merged.weight;
      this.pending--;
    }
    this.stats.droppedRecords++;
    this.stats.droppedBytes += dropped.dataBytes;
    queue.dropFrom = i + 1;
    return true;
  }

  private describe(err: unknown): string {
    const text = describeError(err);
    return this.options.redact ? this.options.redact(text) : text;
  }
}

function cutLine(entry: Entry): Buffer {
  const record: CutRecord = { seq: entry.seq, time: entry.time, type: 'cut', bytes: entry.dataBytes, records: entry.cutRecords ?? 1 };
  return Buffer.from(JSON.stringify(record));
}

export interface ListenerOptions {
  /** How often the listening connection is checked with a query (a dead TCP connection raises nothing). */
  aliveMs?: number;
  /** How long that query may take before the connection counts as dead. */
  aliveTimeoutMs?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
  log?: ServerLog;
  redact?: (text: string) => string;
}

/**
 * The one LISTEN connection of a replica (records and cancels): a plain Client of its own, never a pooled one (the pool
 * closes idle connections, and the LISTEN with them). Followers subscribe by build id and are
 * woken by a notification for their build, and all of them after every (re)connect: notifications
 * sent while the connection was down are lost, so each follower reads again from its cursor.
 * A lost connection (error, end, or a check query unanswered) is replaced, with backoff.
 */
export class RecordListener {
  private client: pg.Client | undefined;
  private readonly subscribers = new Map<string, Set<() => void>>();
  private readonly cancelHandlers = new Set<(buildId: string) => void>();
  private aliveTimer: NodeJS.Timeout | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private retryMs: number;
  private closed = false;
  private connecting = false;
  /** Connections made so far (the first included): tests and metrics. */
  connects = 0;

  constructor(private readonly config: pg.ClientConfig, private readonly options: ListenerOptions = {}) {
    this.retryMs = options.retryMinMs ?? 100;
  }

  get connected(): boolean {
    return this.client !== undefined;
  }

  /** Connects in the background (and again whenever the connection is lost). */
  start(): void {
    void this.connect();
  }

  /** Calls `wake` on each notification for the build and after each reconnect; returns the unsubscribe. */
  subscribe(buildId: string, wake: () => void): () => void {
    let set = this.subscribers.get(buildId);
    if (!set) this.subscribers.set(buildId, (set = new Set()));
    set.add(wake);
    return () => {
      set.delete(wake);
      if (!set.size && this.subscribers.get(buildId) === set) this.subscribers.delete(buildId);
    };
  }

  /**
   * Calls `handler` with the id of each build a cancel is announced for, on any replica. A cancel
   * announced while the connection was down is not heard: the owner's heartbeat reads the marks.
   */
  onCancel(handler: (buildId: string) => void): () => void {
    this.cancelHandlers.add(handler);
    return () => this.cancelHandlers.delete(handler);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.aliveTimer);
    const client = this.client;
    this.client = undefined;
    if (client) await Promise.race([client.end().catch(() => {}), new Promise((r) => setTimeout(r, 2000).unref())]);
    for (const set of this.subscribers.values()) for (const wake of set) wake();
  }

  private async connect(): Promise<void> {
    if (this.closed || this.connecting || this.client) return;
    this.connecting = true;
    // Every query of this connection (LISTEN, the check) answers at once or the connection is dead.
    const client = new pg.Client({ ...this.config, query_timeout: this.options.aliveTimeoutMs ?? 3_000 });
    // Attached before connecting: an 'error' without a listener would end the process.
    client.on('error', (err) => this.lost(client, err));
    client.on('end', () => this.lost(client));
    client.on('notification', (message) => {
      if (message.channel === CANCELS_CHANNEL) {
        for (const handler of this.cancelHandlers) handler(message.payload ?? '');
        return;
      }
      const colon = message.payload?.lastIndexOf(':') ?? -1;
      const set = colon > 0 ? this.subscribers.get(message.payload!.slice(0, colon)) : undefined;
      if (set) for (const wake of set) wake();
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${RECORDS_CHANNEL}; LISTEN ${CANCELS_CHANNEL}`);
    } catch (err) {
      this.connecting = false;
      destroy(client);
      this.retry(err);
      return;
    }
    this.connecting = false;
    if (this.closed) {
      destroy(client);
      return;
    }
    this.client = client;
    this.connects++;
    if (this.connects > 1) this.options.log?.('database-listen-reconnected', { connects: this.connects });
    this.retryMs = this.options.retryMinMs ?? 100;
    this.aliveTimer = setInterval(() => {
      if (this.client !== client) return;
      client.query('SELECT 1').catch((err: unknown) => this.lost(client, err));
    }, this.options.aliveMs ?? 5_000);
    // Whatever was notified while no connection listened is lost: every follower reads again.
    for (const set of [...this.subscribers.values()]) for (const wake of set) wake();
  }

  private lost(client: pg.Client, err?: unknown): void {
    if (this.client !== client) return;
    this.client = undefined;
    clearInterval(this.aliveTimer);
    destroy(client);
    this.retry(err ?? new Error('the listening connection ended'));
  }

  private retry(err: unknown): void {
    if (this.closed) return;
    this.options.log?.('database-listen-lost', { error: this.options.redact ? this.options.redact(describeError(err)) : describeError(err), retry_ms: this.retryMs });
    const wait = this.retryMs * (0.75 + Math.random() / 2);
    this.retryMs = Math.min(this.retryMs * 2, this.options.retryMaxMs ?? 5_000);
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => void this.connect(), wait);
  }
}

/**
 * Ends a client whatever state its connection is in. end() alone waits for the server's goodbye,
 * which never comes over a dead TCP connection: the socket is destroyed as well (node-postgres
 * keeps it as connection.stream).
 */
function destroy(client: pg.Client): void {
  client.end().catch(() => {});
  (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy();
}

export interface FollowOptions {
  /** Records after this seq (a resuming reader's cursor). */
  after?: number;
  signal?: AbortSignal;
  pageSize?: number;
  retryMinMs?: number;
  retryMaxMs?: number;
}

/**
 * A build's records after `after`, in seq order, as they are written, until its exit record (or
 * the signal). Reads `seq > cursor` when woken (a notification for the build, or the listener's
 * reconnect) and when a page came back full; a failed read is retried with backoff. Subscribed
 * before the first read, and a wake during a read causes one more read: nothing is missed.
 */
export async function* followRecords(pool: pg.Pool, listener: RecordListener, buildId: string, options: FollowOptions = {}): AsyncGenerator<StoredRecord> {
  const { signal } = options;
  const pageSize = options.pageSize ?? 1000;
  let cursor = options.after ?? 0;
  let woken = true;
  let wake: (() => void) | undefined;
  const unsubscribe = listener.subscribe(buildId, () => {
    woken = true;
    wake?.();
  });
  const onAbort = () => wake?.();
  signal?.addEventListener('abort', onAbort);
  let retryMs = options.retryMinMs ?? 100;
  try {
    while (!signal?.aborted) {
      if (!woken) await new Promise<void>((resolve) => (wake = resolve));
      wake = undefined;
      if (signal?.aborted) return;
      woken = false;
      let rows: Array<{ seq: string; type: string; payload: Buffer }>;
      try {
        ({ rows } = await pool.query({
          name: 'buildbot-records-follow',
          text: 'SELECT seq, type, payload FROM records WHERE build_id = $1 AND seq > $2 ORDER BY seq LIMIT $3',
          values: [buildId, cursor, pageSize],
        }));
        retryMs = options.retryMinMs ?? 100;
      } catch (err) {
        if (!isConnectionError(err)) throw err;
        woken = true;
        await sleep(retryMs * (0.75 + Math.random() / 2), signal);
        retryMs = Math.min(retryMs * 2, options.retryMaxMs ?? 5_000);
        continue;
      }
      for (const row of rows) {
        cursor = Number(row.seq);
        yield { seq: cursor, type: row.type, line: row.payload };
        if (row.type === 'exit') return;
      }
      if (rows.length === pageSize) woken = true;
    }
  } finally {
    unsubscribe();
    signal?.removeEventListener('abort', onAbort);
  }
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done);
  });
}
