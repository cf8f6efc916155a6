import { createWriteStream, mkdirSync, readdirSync, readFileSync, statSync, type WriteStream } from 'node:fs';
import { open, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ServerLog } from '../../log/server-log.js';
import { recordJson, writeText } from '../../model/record-json.js';
import { BUILD_ID } from '../../model/build-id.js';
import type { LiveBuild, LiveBuilds } from '../types.js';
import { isFinal, type BuildRecord, type BuildSummary } from '../../model/build.js';

/**
 * Builds and their logs, kept across restarts as plain files in the work dir:
 * `.history/<id>.json` (the summary) and `.history/<id>.ndjson` (the records, one per line,
 * within the log cap). Plain files rather than SQLite: Node 20 has no node:sqlite, the
 * current better-sqlite3 needs Node 22 and its older line compiles a native addon on every
 * install; the data is a few files per build, written once, read whole, pruned by count.
 * The directory starts with a dot: a service id cannot, so no clone cache can land on it.
 *
 * It subscribes to the service's records: the head of a log is written as it comes, the tail
 * (which may still be cut) when the build ends. A build that was queued or running in a
 * process that is gone is shown as abandoned.
 */
export class History {
  readonly dir: string;
  private readonly index = new Map<string, BuildSummary>();
  private readonly writers = new Map<string, { stream: WriteStream; written: number }>();
  private readonly saving = new Map<string, Promise<void>>();
  private scannedAt = 0;
  private warned = false;

  constructor(
    workDir: string,
    private readonly service: LiveBuilds,
    private readonly perService: number,
    private readonly log: ServerLog,
  ) {
    this.dir = path.join(workDir, '.history');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.scan();
    service.retainFinished = true;
    service.observe({
      submitted: (build) => {
        this.index.set(build.id, build.summary);
        void this.saveSummary(build.summary);
      },
      record: (build, record) => this.record(build, record),
    });
  }

  /** A build by id: live from the service, or as stored. */
  get(id: string): BuildSummary | undefined {
    if (!BUILD_ID.test(id)) return undefined;
    const live = this.service.get(id);
    if (live) return live.summary;
    this.rescanIfChanged();
    return this.index.get(id);
  }

  /** Running first, then queued, then the rest newest first. */
  list(filter: { serviceId?: string; status?: string; limit: number }): BuildSummary[] {
    this.rescanIfChanged();
    const rank = (s: BuildSummary) => (s.status === 'running' ? 0 : s.status === 'queued' ? 1 : 2);
    return [...this.index.values()]
      .filter((s) => (!filter.serviceId || s.service_id === filter.serviceId) && (!filter.status || s.status === filter.status))
      .sort((a, b) => rank(a) - rank(b) || (a.created_at < b.created_at ? 1 : a.created_at > b.created_at ? -1 : 0))
      .slice(0, filter.limit);
  }

  /**
   * The stored records of a build after `after`, in order (a build of this process is followed
   * live instead). Read a chunk at a time as the caller asks for records: a reader that waits
   * holds one chunk and one line, not the file (readline's iterator reads ahead without bound).
   */
  async *replay(id: string, after = 0): AsyncGenerator<BuildRecord> {
    for await (const line of this.storedLines(id)) {
      const record = parseLine(line);
      if (record && record.seq > after) yield record;
    }
  }

  /**
   * The stored lines of a build after `after` as they are on disk, with the seq and type of each:
   * a reader of NDJSON or SSE gets the line itself (it is the record's JSON, as recordJson wrote it),
   * without a parse and a serialization per reader.
   */
  async *replayLines(id: string, after = 0): AsyncGenerator<StoredLine> {
    for await (const line of this.storedLines(id)) {
      // Every stored record starts {"seq":N,"time":"…","type":"…" (record-json.ts, Build.emit); a line
      // of another shape, or one cut by a crash (no closing brace), is read whole or skipped.
      const head = LINE_HEAD.exec(line.toString('latin1', 0, Math.min(line.length, 96)));
      if (head && line[line.length - 1] === 0x7d) {
        const seq = Number(head[1]);
        if (seq > after) yield { seq, type: head[2], line };
        continue;
      }
      const record = parseLine(line);
      if (record && record.seq > after) yield { seq: record.seq, type: record.type, line: Buffer.from(JSON.stringify(record)) };
    }
  }

  /** The lines of a build's stored log (none when it has none), read a chunk at a time. */
  private async *storedLines(id: string): AsyncGenerator<Buffer> {
    if (!BUILD_ID.test(id)) return;
    let file: FileHandle;
    try {
      file = await open(path.join(this.dir, `${id}.ndjson`), 'r');
    } catch {
      return;
    }
    try {
      yield* fileLines(file);
    } finally {
      await file.close();
    }
  }

  private record(build: LiveBuild, record: BuildRecord): void {
    let writer = this.writers.get(build.id);
    if (!writer) {
      const stream = createWriteStream(path.join(this.dir, `${build.id}.ndjson`), { flags: 'a', mode: 0o600 });
      stream.on('error', (err) => this.failed(err));
      writer = { stream, written: 0 };
      this.writers.set(build.id, writer);
    }
    if (record.type === 'step' && record.phase === 'start' && build.summary.steps.length === 1) void this.saveSummary(build.summary);
    if (record.type !== 'exit') {
      // The head goes to disk as it comes; past it, records wait in the log's tail until the end.
      if (!build.log.headClosed) {
        writeText(writer.stream, recordJson(record));
        writer.written = record.seq;
      }
      return;
    }
    // The exit record: what the tail kept (and the cut), then the final summary.
    for (const kept of build.log.replay(writer.written)) writeText(writer.stream, recordJson(kept));
    this.writers.delete(build.id);
    const summary = { ...build.summary };
    // 'close' follows a finish and an error alike: a full disk must not keep the build in memory.
    writer.stream.once('close', () => {
      void this.saveSummary(summary).then(() => {
        this.index.set(build.id, summary);
        this.service.release(build.id);
        return this.prune(summary.service_id);
      });
    });
    writer.stream.end();
  }

  /** Writes a summary whole (a rename, so a reader never sees half of one), one write per build at a time. */
  private saveSummary(summary: BuildSummary): Promise<void> {
    const text = JSON.stringify(summary);
    const previous = this.saving.get(summary.id) ?? Promise.resolve();
    const next = previous.then(async () => {
      const file = path.join(this.dir, `${summary.id}.json`);
      const tmp = `${file}.${process.pid}.tmp`;
      try {
        await writeFile(tmp, text, { mode: 0o600 });
        await rename(tmp, file);
      } catch (err) {
        this.failed(err as Error);
      }
    });
    this.saving.set(summary.id, next);
    void next.then(() => {
      if (this.saving.get(summary.id) === next) this.saving.delete(summary.id);
    });
    return next;
  }

  /** Keeps the newest `perService` finished builds of a service. */
  private async prune(serviceId: string): Promise<void> {
    const finished = [...this.index.values()]
      .filter((s) => s.service_id === serviceId && isFinal(s.status))
      .sort((a, b) => (a.created_at < b.created_at ? 1 : -1));
    for (const old of finished.slice(this.perService)) {
      this.index.delete(old.id);
      await Promise.all(['json', 'ndjson'].map((ext) => rm(path.join(this.dir, `${old.id}.${ext}`), { force: true })));
    }
  }

  /** Reads the summaries another process (a local buildbot.sh sharing the work dir) changed. */
  private rescanIfChanged(): void {
    try {
      if (statSync(this.dir).mtimeMs > this.scannedAt) this.scan();
    } catch {
      // the directory is gone: nothing new to read
    }
  }

  private scan(): void {
    const started = Date.now();
    let names: string[];
    try {
      names = readdirSync(this.dir);
    } catch (err) {
      this.failed(err as Error);
      return;
    }
    const seen = new Set<string>();
    for (const name of names) {
      const id = name.slice(0, -'.json'.length);
      if (!name.endsWith('.json') || !BUILD_ID.test(id)) continue;
      seen.add(id);
      if (this.service.get(id)) continue;
      const known = this.index.get(id);
      if (known && isFinal(known.status)) continue;
      try {
        const summary = JSON.parse(readFileSync(path.join(this.dir, name), 'utf8')) as BuildSummary;
        if (summary.id !== id) continue;
        if (!isFinal(summary.status) && !this.stillRunning(summary)) {
          summary.status = 'abandoned';
          summary.finished_at = new Date(statSync(path.join(this.dir, `${id}.ndjson`), { throwIfNoEntry: false })?.mtimeMs ?? Date.now()).toISOString();
          void this.saveSummary(summary);
        }
        this.index.set(id, summary);
      } catch {
        // a summary cut by a crash: skipped
      }
    }
    for (const id of this.index.keys()) if (!seen.has(id) && !this.service.get(id)) this.index.delete(id);
    this.scannedAt = started;
  }

  /** Whether the process that runs a build stored as queued or running is still alive. */
  private stillRunning(summary: BuildSummary): boolean {
    // Another host (a server recreated in a new container) or this very process: not running.
    if (summary.host !== os.hostname() || summary.pid === process.pid) return false;
    try {
      process.kill(summary.pid, 0);
      return true;
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM';
    }
  }

  private failed(err: Error): void {
    // Once per process: a full disk must not flood the log; builds go on without history.
    if (this.warned) return;
    this.warned = true;
    this.log('history-write-failed', { dir: this.dir, error: err.message });
  }
}

/** A stored line: the record's JSON as bytes, with its seq and type. */
export interface StoredLine {
  seq: number;
  type: string;
  line: Buffer;
}

const LINE_HEAD = /^\{"seq":(\d{1,15}),"time":"[^"]*","type":"(\w{1,16})"/;

function parseLine(line: Buffer): BuildRecord | undefined {
  try {
    return JSON.parse(line.toString('utf8')) as BuildRecord;
  } catch {
    return undefined; // a line cut by a crash
  }
}

const CHUNK_BYTES = 64 * 1024;
/** No record line is longer than a record can be (one engine read, escaped); a longer one is skipped. */
const MAX_LINE_BYTES = 64 * 1024 * 1024;

/**
 * The lines of a file, read a chunk at a time on demand; empty lines and overlong ones are left
 * out. A line is a view of its chunk (a new one per read), so it stays valid while a socket holds it.
 */
async function* fileLines(file: FileHandle): AsyncGenerator<Buffer> {
  let parts: Buffer[] = [];
  let partBytes = 0;
  let skipping = false;
  for (;;) {
    const chunk = Buffer.allocUnsafe(CHUNK_BYTES);
    const { bytesRead } = await file.read(chunk, 0, CHUNK_BYTES, null);
    if (bytesRead === 0) break;
    let start = 0;
    for (let nl = chunk.indexOf(10, 0); nl >= 0 && nl < bytesRead; nl = chunk.indexOf(10, start)) {
      const tail = chunk.subarray(start, nl);
      const line = parts.length ? Buffer.concat([...parts, tail]) : tail;
      parts = [];
      partBytes = 0;
      start = nl + 1;
      if (!skipping && line.length) yield line;
      skipping = false;
    }
    if (start < bytesRead && !skipping) {
      partBytes += bytesRead - start;
      if (partBytes > MAX_LINE_BYTES) {
        skipping = true;
        parts = [];
        partBytes = 0;
      } else {
        parts.push(chunk.subarray(start, bytesRead));
      }
    }
  }
  if (parts.length && !skipping) yield Buffer.concat(parts);
}
