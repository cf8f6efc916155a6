import { readFileSync } from 'node:fs';
import { rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type Docker from 'dockerode';
import { Removals } from '../docker/removals.js';
import type { ServerLog } from '../log/server-log.js';
import { removeUnusedCaches } from '../pipeline/build-cache.js';
import type { Config } from '../pipeline/config.js';
import { watchEngine, type EngineWatch } from './engine-watch.js';
import { removeOrphans } from './orphans.js';
import { EngineSlots, type Placement, type WaitInfo } from './routing.js';
import { createEngineDocker, redactEngineUrl, type EngineSpec } from './spec.js';
import type { BuildEngine, EngineGrant, Engines, EngineView } from './types.js';

/** One engine of the pool: its client, its builds' config, its removals and its health. */
class PoolEngine implements BuildEngine {
  readonly docker: Docker;
  readonly config: Config;
  readonly removals: Removals;
  readonly url: string;
  watch?: EngineWatch;

  constructor(readonly spec: EngineSpec, base: Config, named: boolean, log: ServerLog) {
    this.docker = createEngineDocker(spec, base.toolEnv);
    // Without --engine the one engine is today's: no name in messages or in per-service keys.
    this.config = { ...base, docker: spec.target, dockerLabel: spec.label, ...(named ? { engineName: spec.name } : {}) };
    this.removals = new Removals(log);
    this.url = redactEngineUrl(spec.url);
  }

  get name(): string {
    return this.spec.name;
  }
}

export interface EnginePoolOptions {
  /** --max-builds: builds at once over all engines. */
  maxBuilds: number;
  /** --affinity-wait in ms. */
  affinityWaitMs: number;
  log: ServerLog;
  /** Ids of the builds running in this process: the orphan sweep leaves their containers alone. */
  running: ReadonlySet<string>;
  /** Whether the specs came from --engine (names in messages and keys) or are the one default engine. */
  named: boolean;
  /** Whether drains are kept in the work dir (the server); the local command neither reads nor writes them. */
  keepDrains?: boolean;
}

/** Drain state in the work dir: small, written whole (a temporary file renamed over it). */
const STATE_FILE = '.engines.json';
const MAX_STATE_BYTES = 64 * 1024;
/** At start: how long an engine has to answer a ping, and how long its orphan sweep may hold the start. */
const START_PING_MS = 5_000;
const START_SWEEP_MS = 15_000;
/** How often caches unused for --build-cache-days are looked for, on each engine. */
const CACHE_EXPIRY_INTERVAL_MS = 3600_000;

/**
 * The engines one server drives (src/engines/types.ts's Engines): builds are placed by
 * src/engines/routing.ts's rule, each engine's health is watched, and what an engine's outage
 * leaves undone (removals, orphans) is done on that engine when it is back.
 */
export class EnginePool implements Engines {
  private readonly engines: PoolEngine[];
  private readonly byName = new Map<string, PoolEngine>();
  private readonly slots: EngineSlots;
  private readonly placements = new Map<string, { engine: string; placement: Placement; count: number }>();
  private readonly stateFile: string;
  private cacheTimer?: NodeJS.Timeout;
  private saving = Promise.resolve();

  constructor(specs: readonly EngineSpec[], base: Config, private readonly options: EnginePoolOptions) {
    this.engines = specs.map((spec) => new PoolEngine(spec, base, options.named, options.log));
    for (const engine of this.engines) this.byName.set(engine.name, engine);
    this.slots = new EngineSlots(specs.map(({ name, weight, slots }) => ({ name, weight, slots })), {
      maxBuilds: options.maxBuilds,
      affinityWaitMs: options.affinityWaitMs,
      // With every named engine down a build fails at once (ENOENGINE) rather than waiting unseen.
      whenNoneUp: options.named ? 'fail' : 'wait',
    });
    this.stateFile = path.join(base.workDir, STATE_FILE);
    if (options.keepDrains) for (const name of this.readDrained()) if (this.byName.has(name)) this.slots.setDraining(name, true);
  }

  /** The engines as builds use them, in the order given. */
  get all(): readonly BuildEngine[] {
    return this.engines;
  }

  /**
   * Sweeps each engine's orphans, starts watching each engine and expiring unused build caches.
   * An engine that does not answer now is marked down by its watch within seconds; its sweep runs when it is back.
   */
  async start(buildCacheDays: number): Promise<void> {
    const { log } = this.options;
    // Whether each engine answers now: one that does not takes no build until its watch sees it back.
    const upAtStart = await Promise.all(this.engines.map(async (engine) => {
      try {
        await (engine.docker.ping as (opts: object) => Promise<unknown>).call(engine.docker, { abortSignal: AbortSignal.timeout(START_PING_MS) });
        return true;
      } catch (err) {
        log('engine-down', { engine: this.options.named ? engine.name : engine.config.dockerLabel, error: (err as Error).message });
        return false;
      }
    }));
    // The sweep of an engine that is up; bounded, so that a slow engine does not hold the start.
    await Promise.all(this.engines.map((engine, i) => (upAtStart[i] ? Promise.race([this.sweep(engine), new Promise((r) => setTimeout(r, START_SWEEP_MS).unref())]) : undefined)));
    const expire = () => {
      for (const engine of this.engines) {
        void removeUnusedCaches(engine.docker, engine.config, buildCacheDays, log)
          .catch((err: Error) => log('build-cache-expire-failed', { engine: engine.name, error: err.message }));
      }
    };
    expire();
    this.cacheTimer = setInterval(expire, CACHE_EXPIRY_INTERVAL_MS);
    this.cacheTimer.unref();
    this.engines.forEach((engine, i) => {
      this.setUp(engine, upAtStart[i]);
      engine.watch = watchEngine(engine.docker, this.options.named ? engine.name : engine.config.dockerLabel, log, (up) => {
        this.setUp(engine, up);
        if (!up) return;
        engine.removals.retryNow();
        void this.sweep(engine);
      }, undefined, upAtStart[i]);
    });
  }

  acquire(serviceId: string, signal: AbortSignal, tell: (place: number, info: WaitInfo) => void): Promise<EngineGrant> {
    return this.slots.acquire(serviceId, signal, tell).then((grant) => {
      const key = `${grant.engine}\0${grant.placement}`;
      const counted = this.placements.get(key) ?? { engine: grant.engine, placement: grant.placement, count: 0 };
      counted.count++;
      this.placements.set(key, counted);
      return { engine: this.byName.get(grant.engine)!, placement: grant.placement, release: grant.release };
    });
  }

  list(): EngineView[] {
    return this.slots.status().map((status) => ({
      name: status.name,
      url: this.byName.get(status.name)!.url,
      state: status.up ? 'up' : 'down',
      draining: status.draining,
      slots: status.slots,
      running: status.running,
    }));
  }

  drain(name: string): Promise<EngineView | undefined> {
    return this.setDraining(name, true);
  }

  resume(name: string): Promise<EngineView | undefined> {
    return this.setDraining(name, false);
  }

  placed(): Array<{ engine: string; placement: Placement; count: number }> {
    return [...this.placements.values()].map((p) => ({ ...p }));
  }

  /** Waits up to ms for every engine's pending removals; false when some are left. */
  async settleRemovals(ms: number): Promise<boolean> {
    const settled = await Promise.all(this.engines.map((engine) => engine.removals.settle(ms)));
    return settled.every(Boolean);
  }

  /** Gives up the removals still pending (the next start's orphan sweep removes what is left). */
  stop(reason: string): void {
    clearInterval(this.cacheTimer);
    for (const engine of this.engines) {
      engine.watch?.stop();
      if (engine.removals.size) engine.removals.stop(reason);
    }
  }

  private async setDraining(name: string, draining: boolean): Promise<EngineView | undefined> {
    if (!this.byName.has(name)) return undefined;
    this.slots.setDraining(name, draining);
    if (this.options.keepDrains) await this.saveDrained();
    return this.list().find((view) => view.name === name);
  }

  /**
   * Named engines (--engine): a down one takes no new build. The one default engine is always
   * tried, as before there were several: its build then fails with the engine's own error
   * (unreachable, TLS, ssh) rather than waiting for it.
   */
  private setUp(engine: PoolEngine, up: boolean): void {
    if (this.options.named) this.slots.setUp(engine.name, up);
  }

  private sweep(engine: PoolEngine): Promise<unknown> {
    return removeOrphans(engine.docker, this.options.log, this.options.running)
      .catch((err: Error) => this.options.log('orphan-check-failed', { engine: engine.name, error: err.message }));
  }

  private readDrained(): string[] {
    let text: string;
    try {
      text = readFileSync(this.stateFile, 'utf8');
    } catch {
      return [];
    }
    try {
      if (text.length > MAX_STATE_BYTES) throw new Error(`over ${MAX_STATE_BYTES} bytes`);
      const state = JSON.parse(text) as { draining?: unknown };
      return Array.isArray(state.draining) ? state.draining.filter((n): n is string => typeof n === 'string') : [];
    } catch (err) {
      this.options.log('engine-state-unreadable', { file: this.stateFile, error: (err as Error).message });
      return [];
    }
  }

  /** One write at a time, each with the state as it is then: the last one written is the latest. */
  private saveDrained(): Promise<void> {
    this.saving = this.saving.then(async () => {
      const draining = this.slots.status().filter((s) => s.draining).map((s) => s.name);
      const temporary = `${this.stateFile}.${process.pid}.tmp`;
      try {
        await writeFile(temporary, `${JSON.stringify({ draining })}\n`, { mode: 0o600 });
        await rename(temporary, this.stateFile);
      } catch (err) {
        this.options.log('engine-state-not-saved', { file: this.stateFile, error: (err as Error).message });
      }
    });
    return this.saving;
  }
}
