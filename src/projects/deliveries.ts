import { mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { ServerLog } from '../log/server-log.js';

/** Deliveries are remembered at least this long (the issue asks three days; forges redeliver for up to a few). */
export const KEEP_MS = 4 * 24 * 3600 * 1000;
/** A flood of made-up delivery ids cannot grow the file past this: the oldest go first. */
const MAX_ENTRIES = 50_000;

interface Seen {
  build: string;
  at: number;
}

/**
 * Webhook deliveries already acted on, by forge, project and delivery id, kept in the work dir
 * (`.hooks/deliveries.json`, written whole by a rename) so a redelivery after a restart is
 * still known. It holds ids and build ids only.
 */
export class Deliveries {
  private readonly file: string;
  private readonly seen = new Map<string, Seen>();

  constructor(workDir: string, private readonly log: ServerLog) {
    const dir = path.join(workDir, '.hooks');
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    this.file = path.join(dir, 'deliveries.json');
    try {
      const stored = JSON.parse(readFileSync(this.file, 'utf8')) as Record<string, Seen>;
      for (const [key, value] of Object.entries(stored)) {
        if (typeof value?.build === 'string' && typeof value.at === 'number') this.seen.set(key, value);
      }
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') log('deliveries-unreadable', { file: this.file, error: (err as Error).message });
    }
    this.prune();
  }

  static key(forge: string, project: string, delivery: string): string {
    return `${forge}/${project}/${delivery}`;
  }

  get(key: string): string | undefined {
    const seen = this.seen.get(key);
    return seen && Date.now() - seen.at < KEEP_MS ? seen.build : undefined;
  }

  remember(key: string, build: string): void {
    this.seen.delete(key);
    this.seen.set(key, { build, at: Date.now() });
    this.prune();
    this.save();
  }

  private prune(): void {
    const now = Date.now();
    for (const [key, seen] of this.seen) if (now - seen.at >= KEEP_MS) this.seen.delete(key);
    // Insertion order is age order.
    for (const key of this.seen.keys()) {
      if (this.seen.size <= MAX_ENTRIES) break;
      this.seen.delete(key);
    }
  }

  private save(): void {
    const tmp = `${this.file}.${process.pid}.tmp`;
    try {
      writeFileSync(tmp, JSON.stringify(Object.fromEntries(this.seen)), { mode: 0o600 });
      renameSync(tmp, this.file);
    } catch (err) {
      this.log('deliveries-write-failed', { file: this.file, error: (err as Error).message });
    }
  }
}
