import { untilIdle } from './idle.js';

/**
 * Engine work no build waits for: the removal of a build's containers after its exit record, and
 * the spare namespaces made for a service's next build. A rebuild started right after the previous
 * one took 0.92-0.94 of the original's time where a second's pause gave 0.59 (issue 22): that work
 * landed on the next build's start (git, the builder's create and start). So it runs one task at
 * a time, and only while no build is starting (from its start until its builder runs, or its
 * image step begins); a task never waits longer than MAX_DEFER_MS, so a server that is never
 * quiet still removes what its builds made.
 */
const MAX_DEFER_MS = 10_000;

interface Task {
  run: () => Promise<unknown>;
  queuedAt: number;
  done: (value: unknown) => void;
}

export class EngineBackground {
  private starting = 0;
  private readonly queue: Task[] = [];
  private busy = false;
  private timer?: NodeJS.Timeout;
  private readonly idle = new Set<() => void>();

  constructor(private readonly maxDeferMs = MAX_DEFER_MS) {}

  /** A build starts: background work waits until the returned function is called (once is enough). */
  buildStarting(): () => void {
    this.starting++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.starting--;
      this.pump();
    };
  }

  /** Runs the task when the engine is not busy starting a build; its result, or undefined if it failed (never rejects). */
  run<T>(task: () => Promise<T>): Promise<T | undefined> {
    return new Promise((resolve) => {
      this.queue.push({ run: task, queuedAt: Date.now(), done: resolve as (value: unknown) => void });
      this.pump();
    });
  }

  /** Runs everything queued now (the process is about to stop). */
  flush(): void {
    for (const task of this.queue) task.queuedAt = 0;
    this.pump();
  }

  /** Resolves true once nothing is queued or running, false after timeoutMs. */
  async settle(timeoutMs: number): Promise<boolean> {
    if (!this.busy && !this.queue.length) return true;
    return untilIdle(this.idle, timeoutMs);
  }

  get pending(): number {
    return this.queue.length + (this.busy ? 1 : 0);
  }

  private pump(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    if (this.busy) return;
    const next = this.queue[0];
    if (!next) {
      for (const done of this.idle) done();
      return;
    }
    const waited = Date.now() - next.queuedAt;
    if (this.starting > 0 && waited < this.maxDeferMs) {
      // Looked at again when a build's start ends, or at the bound.
      this.timer = setTimeout(() => this.pump(), this.maxDeferMs - waited);
      this.timer.unref();
      return;
    }
    this.queue.shift();
    this.busy = true;
    void next.run().catch(() => undefined).then((value) => {
      this.busy = false;
      next.done(value);
      this.pump();
    });
  }
}

const queues = new Map<object, EngineBackground>();

/** The background work of one engine (its dockerode client): builds on another engine do not hold it back. */
export function engineBackground(docker: object): EngineBackground {
  let queue = queues.get(docker);
  if (!queue) queues.set(docker, (queue = new EngineBackground()));
  return queue;
}

/** Every engine's background work: run now (the process stops), and settled within timeoutMs. */
export async function settleAllBackground(timeoutMs: number, flush = false): Promise<boolean> {
  const all = [...queues.values()];
  if (flush) all.forEach((queue) => queue.flush());
  return (await Promise.all(all.map((queue) => queue.settle(timeoutMs)))).every(Boolean);
}
