import { AsyncLocalStorage } from 'node:async_hooks';
import type Docker from 'dockerode';

/** What a build waits on outside this process. */
export type WaitKind = 'engine' | 'git';

interface Interval {
  start: number;
  end: number;
  /** What was waited on: an engine request (method and path) or a git command. */
  what?: string;
}

/** One engine request or git run of a build (BUILDBOT_TRACE=calls). */
export interface CallTiming {
  kind: WaitKind;
  what: string;
  /** When it started, from the build's start. */
  at_ms: number;
  ms: number;
}

export interface StepTiming {
  step: string;
  wall_ms: number;
  /** Time with at least one engine request open (a container running counts: its attach or wait is open). */
  engine_ms: number;
  /** Time with git, hg or ssh running for the build. */
  git_ms: number;
  /** This process's own CPU time (user + system) meanwhile; in a server it includes other builds' work. */
  cpu_ms: number;
}

/**
 * Where a build's time goes: each step's wall time, split into waiting for the engine, waiting
 * for git and this process's own CPU. Engine requests and git runs are found through an
 * AsyncLocalStorage, so they are attributed to the build that made them without passing the
 * trace through every call; work started in the background lands in the steps it overlaps.
 */
export class BuildTrace {
  private readonly waits: Record<WaitKind, Interval[]> = { engine: [], git: [] };
  private readonly steps: Array<{ step: string; start: number; end: number; cpu: number }> = [];
  private readonly origin = performance.now();
  private readonly cpuOrigin = process.cpuUsage();

  wait(kind: WaitKind, start: number, end: number, what?: string): void {
    this.waits[kind].push({ start, end, what });
  }

  /** Every engine request and git run, in the order they started. */
  calls(): CallTiming[] {
    return (['engine', 'git'] as const)
      .flatMap((kind) => this.waits[kind].map((i) => ({ kind, what: i.what ?? '', at_ms: Math.round(i.start - this.origin), ms: Math.round(i.end - i.start) })))
      .sort((a, b) => a.at_ms - b.at_ms);
  }

  /** Times one step; returns what ends it. */
  step(name: string): () => void {
    const start = performance.now();
    const cpu = process.cpuUsage();
    return () => {
      const used = process.cpuUsage(cpu);
      this.steps.push({ step: name, start, end: performance.now(), cpu: (used.user + used.system) / 1000 });
    };
  }

  /** One row per step, then a "total" row over the whole build so far. */
  timings(): StepTiming[] {
    const row = (step: string, start: number, end: number, cpu: number): StepTiming => ({
      step,
      wall_ms: Math.round(end - start),
      engine_ms: Math.round(covered(this.waits.engine, start, end)),
      git_ms: Math.round(covered(this.waits.git, start, end)),
      cpu_ms: Math.round(cpu),
    });
    const used = process.cpuUsage(this.cpuOrigin);
    return [
      ...this.steps.map((s) => row(s.step, s.start, s.end, s.cpu)),
      row('total', this.origin, performance.now(), (used.user + used.system) / 1000),
    ];
  }
}

/** How much of [from, to] the intervals cover (overlapping intervals count once). */
export function covered(intervals: readonly Interval[], from: number, to: number): number {
  const clipped = intervals
    .map((i) => ({ start: Math.max(i.start, from), end: Math.min(i.end, to) }))
    .filter((i) => i.end > i.start)
    .sort((a, b) => a.start - b.start);
  let total = 0;
  let reach = from;
  for (const i of clipped) {
    if (i.end <= reach) continue;
    total += i.end - Math.max(i.start, reach);
    reach = i.end;
  }
  return total;
}

const current = new AsyncLocalStorage<BuildTrace>();

/** Runs fn with trace as the build whose engine requests and git runs are counted (without one, just runs it). */
export function withTrace<T>(trace: BuildTrace | undefined, fn: () => T): T {
  return trace ? current.run(trace, fn) : fn();
}

/** Counts fn as waiting of the given kind for the build it runs in (if that build is traced). */
export async function traced<T>(kind: WaitKind, fn: () => Promise<T>, what?: string): Promise<T> {
  const trace = current.getStore();
  if (!trace) return fn();
  const start = performance.now();
  try {
    return await fn();
  } finally {
    trace.wait(kind, start, performance.now(), what);
  }
}

const INSTRUMENTED = Symbol('buildbot.trace');

type Dial = (options: unknown, callback: (err: unknown, data: unknown) => void) => unknown;

/**
 * Counts every request the client makes to the engine as engine time of the build that made it:
 * from the request to its response, or for a streamed response (build, push, attach) to the
 * stream's end. Installed once per client; a request outside a traced build is left alone.
 */
export function traceEngine(docker: Docker): void {
  const modem = docker.modem as unknown as { dial: Dial; [INSTRUMENTED]?: true };
  if (modem[INSTRUMENTED]) return;
  modem[INSTRUMENTED] = true;
  const dial = modem.dial.bind(modem);
  modem.dial = (options, callback) => {
    const trace = current.getStore();
    if (!trace) return dial(options, callback);
    const start = performance.now();
    // The path without its query (which may carry a registry's credentials) nor a long id.
    const { method, path } = options as { method?: string; path?: string };
    const what = `${method ?? 'GET'} ${(path ?? '').split('?')[0].replace(/[0-9a-f]{64}/g, (id) => id.slice(0, 12))}`;
    return dial(options, (err, data) => {
      const stream = data as NodeJS.EventEmitter & { pipe?: unknown };
      if (!err && stream && typeof stream.once === 'function' && typeof stream.pipe === 'function') {
        let open = true;
        const end = () => {
          if (open) trace.wait('engine', start, performance.now(), what);
          open = false;
        };
        // Not 'error': a listener for it would keep an unhandled stream error from surfacing. A stream closes after an error anyway.
        for (const event of ['end', 'close']) stream.once(event, end);
      } else {
        trace.wait('engine', start, performance.now(), what);
      }
      callback(err, data);
    });
  };
}
