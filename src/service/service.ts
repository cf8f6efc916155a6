import type { Config } from '../pipeline/config.js';
import type { EngineGrant, Engines } from '../engines/types.js';
import { errors, EXIT_CANCELLED, EXIT_FAILURE, isBuildError } from '../model/errors.js';
import { timeLimitOf } from '../pipeline/build-signal.js';
import { UserOutput } from '../io/output.js';
import { createRedactor } from '../io/redact.js';
import type { ServerLog } from '../log/server-log.js';
import { runBuild } from '../pipeline/run-build.js';
import type { BuildRequest } from '../request/types.js';
import { Build, seconds, type RecordObserver } from './build.js';
import { BuildQueue } from './queue.js';
import { newBuildId } from '../model/build-id.js';
import type { BuildRecord, BuildSource, BuildStatus, BuildTrigger } from '../model/build.js';

export interface BuildServiceOptions {
  /** The server's settings; each build runs with its engine's copy of them (BuildEngine.config). */
  config: Config;
  /** Where builds run: a slot on an engine per build (--max-builds in all, slots=N per engine). */
  engines: Engines;
  log: ServerLog;
  /** Builds running at once in all; the rest wait in line. */
  maxBuilds: number;
  /** Output kept per build (head and tail); the middle of a larger log is cut. */
  logCapBytes: number;
  /** Filled with the ids of the builds running, so an orphan sweep leaves their containers alone. */
  running?: Set<string>;
}

/** Hears of builds as they are submitted and as their records come (history, metrics). */
export interface BuildObserver {
  submitted?(build: Build): void;
  /** `bytes`: the raw bytes of an output record. */
  record?(build: Build, record: BuildRecord, bytes?: Buffer): void;
  /** The checkout resolved the revision to this commit (before any later step runs). */
  checkedOut?(build: Build, commit: string): void;
  /**
   * What a list of builds shows changed: submitted, waiting, a step started or ended, output cut,
   * the end (every record but output). The one fan-out the API's and the monitor's live lists follow.
   */
  changed?(build: Build): void;
}

export const DEFAULT_LOG_CAP_BYTES = 10 * 1024 * 1024;

/**
 * The one place builds happen, whatever front asked: it gives each build its id before it
 * queues, keeps it in line for a slot, runs it, tells its records to followers and
 * observers, cancels it and stops everything on shutdown. Fronts (SSH, HTTP, the local
 * command) turn requests into submit() and records into bytes.
 */
export class BuildService {
  readonly queue: BuildQueue;
  private readonly builds = new Map<string, Build>();
  private readonly observers: BuildObserver[] = [];
  private stopping = false;
  /**
   * Whether a finished build stays in memory until release(): set by the history, which
   * releases it once stored. Otherwise it is forgotten when it ends.
   */
  retainFinished = false;

  constructor(private readonly options: BuildServiceOptions) {
    this.queue = new BuildQueue(options.engines);
  }

  /** The settings builds run with (a front checks a request's --timeout against them before submitting). */
  get config(): Config {
    return this.options.config;
  }

  get maxBuilds(): number {
    return this.options.maxBuilds;
  }

  get isStopping(): boolean {
    return this.stopping;
  }

  observe(observer: BuildObserver): void {
    this.observers.push(observer);
  }

  /**
   * Starts a build: it is queued at once and runs when its turn comes. Refused here, for every
   * front alike, while the server stops (ESHUTTINGDOWN) and when its --timeout is above the
   * server's limit (before it waits in line, not when its turn comes).
   */
  submit(request: BuildRequest, source: BuildSource, trigger?: BuildTrigger): Build {
    if (this.stopping) throw errors.shuttingDown();
    timeLimitOf(request, this.options.config);
    const id = newBuildId();
    const onRecord: RecordObserver = (build, record, bytes) => {
      for (const observer of this.observers) observer.record?.(build, record, bytes);
      if (record.type !== 'output') for (const observer of this.observers) observer.changed?.(build);
    };
    const build = new Build(id, request, source, this.options.logCapBytes, onRecord, trigger);
    this.builds.set(id, build);
    for (const observer of this.observers) observer.submitted?.(build);
    for (const observer of this.observers) observer.changed?.(build);
    this.options.log('build-queued', { build: id, service: request.serviceId, source });
    void this.run(build).finally(() => {
      if (!this.retainFinished) this.builds.delete(id);
    });
    return build;
  }

  get(id: string): Build | undefined {
    return this.builds.get(id);
  }

  /** The builds of this process: running and queued, and finished ones not yet released. */
  all(): Build[] {
    return [...this.builds.values()];
  }

  /** Cancels a queued or running build; false when it has ended already. */
  cancel(id: string, reason = 'cancelled'): boolean {
    const build = this.builds.get(id);
    if (!build || build.summary.exit_code !== null) return false;
    build.cancelReason ??= reason;
    build.controller.abort();
    return true;
  }

  get counts(): { running: number; queued: number } {
    let running = 0;
    let queued = 0;
    for (const build of this.builds.values()) {
      if (build.status === 'running') running++;
      else if (build.status === 'queued') queued++;
    }
    return { running, queued };
  }

  /** Resolves when no build is queued or running. */
  async idle(): Promise<void> {
    for (;;) {
      const live = this.all().filter((b) => b.summary.exit_code === null);
      if (!live.length) return;
      await Promise.all(live.map((b) => b.done));
    }
  }

  /** Refuses new builds from now on. */
  stop(): void {
    this.stopping = true;
  }

  abortAll(): void {
    for (const build of this.builds.values()) this.cancel(build.id, 'the server is stopping');
  }

  private async run(build: Build): Promise<void> {
    const { request } = build;
    const signal = build.controller.signal;
    // The service's own lines (cancelled while waiting) pass the same redacting writer.
    const out = new UserOutput(build.io, createRedactor(request.secrets));
    let grant: EngineGrant | undefined;
    try {
      grant = await this.queue.acquire(
        request.serviceId, signal,
        (place) => build.emit({ type: 'queued', place, waiting_for: 'slot' }),
        () => build.emit({ type: 'queued', place: this.servicePlace(build), waiting_for: 'service' }),
      );
    } catch (err) {
      // No engine can take it (every named engine down or draining): said at once, not waited out.
      if (isBuildError(err) && err.code !== 'ECANCELLED' && !signal.aborted) {
        out.errorLine(`error: ${err.message}`);
        await out.close();
        build.summary.error = { code: err.code, message: err.message };
        build.finish(err.exitCode, 'failed');
        this.options.log('build-refused', { build: build.id, service: request.serviceId, error: err.code });
        return;
      }
      out.errorLine('error: build cancelled while it waited in line');
      await out.close();
      build.finish(EXIT_CANCELLED, 'cancelled');
      this.options.log('build-cancelled', { build: build.id, service: request.serviceId, while: 'queued' });
      return;
    }
    let code: number;
    try {
      await out.close();
      build.summary.status = 'running';
      build.summary.started_at = new Date().toISOString();
      build.summary.engine = grant.engine.name;
      this.options.log('build-placed', { build: build.id, service: request.serviceId, engine: grant.engine.name, placement: grant.placement });
      code = await runBuild(request, build.io, signal, {
        config: grant.engine.config,
        docker: grant.engine.docker,
        log: this.options.log,
        buildId: build.id,
        removals: grant.engine.removals,
        running: this.options.running,
        hooks: {
          step: (name, phase, info) => {
            if (phase === 'start') {
              build.summary.steps.push({ name, started_at: new Date().toISOString() });
              build.emit({ type: 'step', name, phase });
            } else {
              const step = [...build.summary.steps].reverse().find((s) => s.name === name);
              const duration = seconds(info.durationMs ?? 0);
              if (step) Object.assign(step, { duration, ok: info.ok });
              build.emit({ type: 'step', name, phase, duration, ok: info.ok });
            }
          },
          checkedOut: (commit) => {
            build.summary.commit = commit;
            for (const observer of this.observers) observer.checkedOut?.(build, commit);
          },
          finished: (outcome) => {
            build.summary.commit = outcome.commit;
            build.summary.digest = outcome.digest;
            build.summary.error = outcome.error;
          },
        },
      });
    } catch (err) {
      // runBuild reports every failure itself; anything else is the server's own bug.
      this.options.log('build-internal-error', { build: build.id, stack: (err as Error).stack ?? String(err) });
      const lastWords = new UserOutput(build.io, createRedactor(request.secrets));
      lastWords.errorLine('error: unexpected failure in the server; its log has the details');
      await lastWords.close();
      code = isBuildError(err) ? err.exitCode : EXIT_FAILURE;
    } finally {
      grant.release();
    }
    build.finish(code, statusOf(code, signal.aborted));
  }

  /** How many builds of the same service are ahead of this one. */
  private servicePlace(build: Build): number {
    let ahead = 0;
    for (const other of this.builds.values()) {
      if (other === build) break;
      if (other.summary.service_id === build.summary.service_id && other.summary.exit_code === null) ahead++;
    }
    return Math.max(ahead, 1);
  }

  /** Forgets a finished build (the history has stored it). */
  release(id: string): void {
    if (this.builds.get(id)?.summary.exit_code !== null) this.builds.delete(id);
  }
}

function statusOf(code: number, aborted: boolean): BuildStatus {
  if (code === 0) return 'succeeded';
  return aborted && code === EXIT_CANCELLED ? 'cancelled' : 'failed';
}
