import { Transform } from 'node:stream';
import { errors, type BuildError } from '../model/errors.js';

/**
 * The stall watchdog: every engine, git, hg and registry operation of a build must show
 * progress (a byte, an event) at least once per stall timeout, or the build fails with
 * ESTALLED and one line naming what stalled. Nothing else in the pipeline has a timeout of its
 * own, so without this a silent peer (a frozen engine, a network cut without a FIN, two calls
 * that wait on each other) holds a build, its slot and its service lock for ever.
 *
 * While user code runs (build.sh, the in-image test) silence is normal: there the engine is
 * probed with GET /_ping instead, and only a probe left unanswered fails the build.
 */

/** What a stall message names: who went silent, doing what, and where to look. */
export interface Activity {
  /** "the engine", "git", "hg". */
  source: string;
  /** What the build was doing, after "while": "pushing api:1.4.2". */
  doing: string;
  /** What to do about it. */
  hint: string;
}

export const ENGINE_HINT = 'check the engine with docker info';

/** Timers, replaceable in unit tests. */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

const realClock: Clock = {
  now: () => performance.now(),
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    // A watchdog never keeps the process alive by itself.
    t.unref?.();
    return t;
  },
  clearTimeout: (handle) => clearTimeout(handle as NodeJS.Timeout),
};

export const seconds = (ms: number) => `${Math.round(ms / 100) / 10} s`.replace('.0 s', ' s');

export function stallMessage(activity: Activity, stallMs: number): string {
  return `${activity.source} sent nothing for ${seconds(stallMs)} while ${activity.doing}; ${activity.hint}`;
}

/**
 * Fires onStall once if progress() is not called for stallMs. stop() disarms it. Pure timer
 * logic, without I/O, so that it can be tested with a fake clock.
 */
export class StallTimer {
  private handle: unknown;
  private fired = false;
  private stopped = false;
  private last: number;

  constructor(
    private readonly stallMs: number,
    private readonly onStall: () => void,
    private readonly clock: Clock = realClock,
  ) {
    this.last = clock.now();
    this.arm(stallMs);
  }

  /** Called for every chunk of a stream: only notes the time; the one timer checks it when it fires. */
  progress(): void {
    this.last = this.clock.now();
  }

  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.handle);
  }

  get hasFired(): boolean {
    return this.fired;
  }

  private arm(ms: number): void {
    this.handle = this.clock.setTimeout(() => {
      if (this.stopped) return;
      const idle = this.clock.now() - this.last;
      if (idle < this.stallMs) return this.arm(this.stallMs - idle);
      this.fired = true;
      this.onStall();
    }, ms);
  }
}

/**
 * Probes a peer while it may rightly stay silent: a probe every intervalMs (one at a time),
 * each of which must answer within stallMs; onStall fires once when one does not. A probe that
 * fails fast (connection refused) is not a stall: the operation itself sees that error.
 */
export class Prober {
  private stopped = false;
  private timer: unknown;
  private current?: AbortController;

  constructor(
    private readonly probe: (signal: AbortSignal) => Promise<unknown>,
    private readonly intervalMs: number,
    private readonly stallMs: number,
    private readonly onStall: () => void,
    private readonly clock: Clock = realClock,
  ) {
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    this.clock.clearTimeout(this.timer);
    this.current?.abort();
  }

  private schedule(): void {
    if (this.stopped) return;
    this.timer = this.clock.setTimeout(() => this.once(), this.intervalMs);
  }

  private once(): void {
    if (this.stopped) return;
    const controller = new AbortController();
    this.current = controller;
    let answered = false;
    const deadline = new StallTimer(this.stallMs, () => {
      if (answered || this.stopped) return;
      this.stopped = true;
      controller.abort();
      this.onStall();
    }, this.clock);
    this.probe(controller.signal).then(
      () => undefined,
      () => undefined,
    ).finally(() => {
      answered = true;
      deadline.stop();
      this.schedule();
    });
  }
}

/** How often the engine is probed while user code runs: min(stall timeout, 30 s). */
export const probeInterval = (stallMs: number) => Math.min(stallMs, 30_000);

/**
 * One build's watchdog. A stall calls fail() with the ESTALLED error, which aborts the build's
 * signal (every request and child process of the build ends); the guarded operation also
 * rejects at once, in case it does not heed the signal.
 */
export class Watchdog {
  constructor(
    readonly stallMs: number,
    private readonly fail: (err: BuildError) => void,
    private readonly ping: (signal: AbortSignal) => Promise<unknown>,
    private readonly clock: Clock = realClock,
  ) {}

  /**
   * Runs an operation that must show progress: run gets a progress() to call on every byte or
   * event. One that only answers at its end (create, inspect, a login check) calls nothing and
   * must answer within the stall timeout.
   */
  async guard<T>(activity: Activity, run: (progress: () => void) => Promise<T>): Promise<T> {
    let stalled!: (err: BuildError) => void;
    const stall = new Promise<never>((_, reject) => (stalled = reject));
    const timer = new StallTimer(this.stallMs, () => {
      const err = errors.stalled(stallMessage(activity, this.stallMs));
      stalled(err);
      this.fail(err);
    }, this.clock);
    stall.catch(() => undefined);
    try {
      return await Promise.race([run(() => timer.progress()), stall]);
    } finally {
      timer.stop();
    }
  }

  /** guard() for an engine call. */
  engine<T>(doing: string, run: (progress: () => void) => Promise<T>): Promise<T> {
    return this.guard({ source: 'the engine', doing, hint: ENGINE_HINT }, run);
  }

  /** Runs user code that may be silent for long: the engine is probed meanwhile instead. */
  async whileUserCode<T>(activity: Activity, run: () => Promise<T>): Promise<T> {
    let stalled!: (err: BuildError) => void;
    const stall = new Promise<never>((_, reject) => (stalled = reject));
    stall.catch(() => undefined);
    const prober = new Prober(this.ping, probeInterval(this.stallMs), this.stallMs, () => {
      const err = errors.stalled(`the engine answered no ping for ${seconds(this.stallMs)} while ${activity.doing}; ${activity.hint}`);
      stalled(err);
      this.fail(err);
    }, this.clock);
    try {
      return await Promise.race([run(), stall]);
    } finally {
      prober.stop();
    }
  }
}

/**
 * The stream's bytes unchanged, with progress() called as each chunk is taken. A 'data'
 * listener would do the same on a stream already being read, but on one that is handed on
 * (an upload) it would start the flow before the reader is there and lose the first chunks.
 */
export function withProgress(source: NodeJS.ReadableStream, progress: () => void): Transform {
  const counted = new Transform({
    transform(chunk, _encoding, done) {
      progress();
      done(null, chunk);
    },
  });
  (source as NodeJS.EventEmitter).on('error', (err: Error) => counted.destroy(err));
  source.pipe(counted);
  return counted;
}
