import type Docker from 'dockerode';
import type { ServerLog } from '../log/server-log.js';
import { engineMessage, statusOf } from './engine.js';
import { isEngineConnectionLoss } from './wait.js';
import { untilIdle } from './idle.js';

/**
 * How long one removal may wait for the engine's answer. The engine kills the container at once
 * (no stop timeout with force), so a minute is ample; past it the engine is taken for frozen,
 * and Removals retries as for an engine that went away. Unbounded, a frozen engine held the
 * build's end (its cleanup) and the orphan sweep for ever.
 */
export const REMOVE_TIMEOUT_MS = 60_000;

export async function removeContainer(container: Docker.Container, timeoutMs = REMOVE_TIMEOUT_MS): Promise<void> {
  const signal = AbortSignal.timeout(timeoutMs);
  try {
    await container.remove({ force: true, v: true, abortSignal: signal } as object);
  } catch (err) {
    if (signal.aborted) throw Object.assign(new Error(`the engine did not answer the removal within ${timeoutMs / 1000} s`), { code: 'ETIMEDOUT' });
    // Gone already, or removal already under way: either way it will not remain.
    if (![304, 404, 409].includes(statusOf(err) ?? 0)) throw err;
  }
}

export interface RemovalOptions {
  /** First retry after this long, doubling up to maxDelayMs. */
  firstDelayMs?: number;
  maxDelayMs?: number;
  /** Retries while the engine answers but refuses; while it does not answer at all, retries never stop. */
  maxRefusals?: number;
  /** How long one attempt waits for the engine (REMOVE_TIMEOUT_MS). */
  timeoutMs?: number;
}

interface Pending {
  container: Docker.Container;
  fields: Record<string, unknown>;
  attempts: number;
  refusals: number;
  delayMs: number;
  timer?: NodeJS.Timeout;
  running?: Promise<void>;
}

/**
 * Container removals that outlive an engine outage. A removal that fails (the engine restarting,
 * its socket gone) is retried in the background with backoff until the engine answers again, so
 * a builder whose removal was tried while the engine was down does not stay behind for good.
 * The build itself does not wait for the retries: it ends, and says what it ended with.
 * Log events: cleanup-retry (each failed attempt, with the next delay), cleanup-done,
 * cleanup-gave-up (the engine refused too often, or the process stops first).
 */
export class Removals {
  private readonly pending = new Map<string, Pending>();
  private readonly idle = new Set<() => void>();
  private stopped = false;
  private readonly firstDelayMs: number;
  private readonly maxDelayMs: number;
  private readonly maxRefusals: number;
  private readonly timeoutMs?: number;

  constructor(private readonly log: ServerLog, options: RemovalOptions = {}) {
    this.firstDelayMs = options.firstDelayMs ?? 1_000;
    this.maxDelayMs = options.maxDelayMs ?? 30_000;
    this.maxRefusals = options.maxRefusals ?? 5;
    this.timeoutMs = options.timeoutMs;
  }

  /** Removes the container now; if that fails, keeps trying in the background. Never throws. */
  async remove(container: Docker.Container, fields: Record<string, unknown> = {}): Promise<void> {
    if (this.pending.has(container.id)) return;
    const entry: Pending = { container, fields: { container: container.id.slice(0, 12), ...fields }, attempts: 0, refusals: 0, delayMs: this.firstDelayMs };
    this.pending.set(container.id, entry);
    await this.attempt(entry);
  }

  /** Containers whose removal has not succeeded yet. */
  get size(): number {
    return this.pending.size;
  }

  get left(): string[] {
    return [...this.pending.keys()].map((id) => id.slice(0, 12));
  }

  /** The engine is back: try every pending removal now instead of at its next backoff. */
  retryNow(): void {
    for (const entry of this.pending.values()) {
      if (entry.running) continue;
      clearTimeout(entry.timer);
      entry.delayMs = this.firstDelayMs;
      void this.attempt(entry);
    }
  }

  /** Resolves true once no removal is pending, or false after timeoutMs. */
  async settle(timeoutMs: number): Promise<boolean> {
    if (this.pending.size === 0) return true;
    return untilIdle(this.idle, timeoutMs);
  }

  /** Stops retrying; what is left is logged (the orphan sweep of the next start removes it). */
  stop(reason: string): void {
    this.stopped = true;
    for (const entry of this.pending.values()) {
      clearTimeout(entry.timer);
      this.log('cleanup-gave-up', { ...entry.fields, attempts: entry.attempts, reason });
    }
    this.pending.clear();
    this.notifyIdle();
  }

  private attempt(entry: Pending): Promise<void> {
    entry.running = (async () => {
      entry.attempts++;
      try {
        await removeContainer(entry.container, this.timeoutMs);
        if (this.pending.get(entry.container.id) !== entry) return;
        this.pending.delete(entry.container.id);
        if (entry.attempts > 1) this.log('cleanup-done', { ...entry.fields, attempts: entry.attempts });
        this.notifyIdle();
      } catch (err) {
        if (this.stopped || this.pending.get(entry.container.id) !== entry) return;
        // A removal the engine did not answer in time (a frozen engine) is retried like one it could not be asked.
        const unreachable = isEngineConnectionLoss(err) || (err as NodeJS.ErrnoException).code === 'ETIMEDOUT';
        if (!unreachable && ++entry.refusals > this.maxRefusals) {
          this.pending.delete(entry.container.id);
          this.log('cleanup-gave-up', { ...entry.fields, attempts: entry.attempts, error: engineMessage(err), reason: 'the engine refused the removal' });
          this.notifyIdle();
          return;
        }
        this.log('cleanup-retry', { ...entry.fields, attempt: entry.attempts, 'retry-in-ms': entry.delayMs, error: engineMessage(err) });
        entry.timer = setTimeout(() => void this.attempt(entry), entry.delayMs);
        // A process that has nothing else left to do is not kept alive by a retry alone.
        entry.timer.unref();
        entry.delayMs = Math.min(entry.delayMs * 2, this.maxDelayMs);
      } finally {
        entry.running = undefined;
      }
    })();
    return entry.running;
  }

  private notifyIdle(): void {
    if (this.pending.size) return;
    for (const done of this.idle) done();
  }
}
