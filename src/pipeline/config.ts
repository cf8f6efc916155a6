import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLimitsFrom, type BuildLimits } from '../docker/limits.js';
import { parseEngineTarget, type EngineTarget } from '../docker/remote.js';
import { errors } from '../model/errors.js';

/** The server's own settings (never a build's): defaults, then environment and flags, then validation. */
export interface Config {
  /** Clone caches, pinned git host keys and locks live here. */
  workDir: string;
  /** The engine, from DOCKER_HOST and the docker CLI's TLS variables (src/docker/remote.ts). */
  docker: EngineTarget;
  /** How the engine is named in error messages. */
  dockerLabel: string;
  /**
   * The engine's name when the server drives named engines (--engine, src/engines/): messages name it,
   * and what is kept per service between builds (spare namespaces, cache marks) is kept per engine too.
   */
  engineName?: string;
  /** Network of the builder and test containers; undefined keeps the engine's default. */
  buildNetwork?: string;
  /** Memory and process limits of the builder and test containers (src/docker/limits.ts). */
  buildLimits: BuildLimits;
  /** The environment git, hg and ssh run with: only what they need, none of the server's secrets. */
  toolEnv: Record<string, string>;
  /** BUILDBOT_TRACE=1: log where each build's time goes, per step (engine, git, own CPU). */
  trace: boolean;
  /** BUILDBOT_TRACE=calls: the same, and every engine request and git run of the build with its time. */
  traceCalls: boolean;
  /**
   * Seconds an idle SSH connection to a git host stays open for the next build with the same
   * key (src/vcs/ssh-master.ts); 0: none. Only the server sets it: a one-shot buildbot.sh would
   * leave the connection behind.
   */
  gitSshPersistSeconds: number;
  /**
   * Seconds a network namespace made after a service's build waits for its next build's builder
   * (src/pipeline/spare-networks.ts); 0: none. Only the server sets it, as gitSshPersistSeconds.
   */
  spareNetworkSeconds: number;
  /** An engine, git, hg or registry operation silent this long fails its build (src/docker/watchdog.ts). */
  stallTimeoutMs: number;
  /** A build running this long is cancelled (src/pipeline/build-signal.ts); a request may only lower it. */
  buildTimeoutMs: number;
  /** A service's #build_cache volumes together over this are dropped after its build (src/pipeline/build-cache.ts). */
  buildCacheMaxBytes: number;
  /** Caches unused this many days are removed (by the server, at start and every hour). */
  buildCacheDays: number;
}

/** Defaults of the settings both the server and buildbot.sh have, in seconds. */
/** A service's key for what is kept between its builds on one engine (see engineName). */
export const perEngine = (config: Pick<Config, 'engineName'>, serviceId: string) => (config.engineName ? `${config.engineName}/${serviceId}` : serviceId);

export const TIMEOUT_DEFAULTS = { stallSeconds: 600, buildSeconds: 3600 };
export const BUILD_CACHE_DEFAULTS = { maxMb: 4096, days: 14 };

type Env = Readonly<Record<string, string | undefined>>;

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

export interface ConfigOverrides {
  workDir?: string;
  /** --build-memory / --build-pids of the server, over BUILDBOT_BUILD_MEMORY / BUILDBOT_BUILD_PIDS. */
  buildMemory?: { value: string; setting: string };
  buildPids?: { value: string; setting: string };
  /** Flag values, which win over the environment: seconds, unvalidated. */
  stallTimeout?: string;
  buildTimeout?: string;
  buildCacheMaxMb?: string;
  buildCacheDays?: string;
}

export function loadConfig(env: Env, overrides: ConfigOverrides = {}): Config {
  const workDir = path.resolve(overrides.workDir ?? env.BUILDBOT_WORK_DIR ?? path.join(PACKAGE_ROOT, 'buildbot-work'));
  const engine = parseEngineTarget(env);
  return {
    workDir,
    docker: engine.target,
    dockerLabel: engine.label,
    buildNetwork: env.BUILDBOT_BUILD_NETWORK || undefined,
    buildLimits: buildLimitsFrom(overrides.buildMemory?.value ?? env.BUILDBOT_BUILD_MEMORY, overrides.buildPids?.value ?? env.BUILDBOT_BUILD_PIDS, {
      memory: overrides.buildMemory?.setting ?? 'BUILDBOT_BUILD_MEMORY',
      pids: overrides.buildPids?.setting ?? 'BUILDBOT_BUILD_PIDS',
    }),
    trace: env.BUILDBOT_TRACE === '1' || env.BUILDBOT_TRACE === 'calls',
    traceCalls: env.BUILDBOT_TRACE === 'calls',
    gitSshPersistSeconds: 0,
    spareNetworkSeconds: 0,
    stallTimeoutMs: 1000 * timeoutSeconds(overrides.stallTimeout, env.BUILDBOT_STALL_TIMEOUT, '--stall-timeout', 'BUILDBOT_STALL_TIMEOUT', TIMEOUT_DEFAULTS.stallSeconds),
    buildTimeoutMs: 1000 * timeoutSeconds(overrides.buildTimeout, env.BUILDBOT_BUILD_TIMEOUT, '--build-timeout', 'BUILDBOT_BUILD_TIMEOUT', TIMEOUT_DEFAULTS.buildSeconds),
    buildCacheMaxBytes: 1024 * 1024 * wholeNumber(overrides.buildCacheMaxMb, env.BUILDBOT_BUILD_CACHE_MAX_MB, '--build-cache-max-mb', 'BUILDBOT_BUILD_CACHE_MAX_MB', BUILD_CACHE_DEFAULTS.maxMb, 1 << 30),
    buildCacheDays: wholeNumber(overrides.buildCacheDays, env.BUILDBOT_BUILD_CACHE_DAYS, '--build-cache-days', 'BUILDBOT_BUILD_CACHE_DAYS', BUILD_CACHE_DEFAULTS.days, 36500),
    toolEnv: {
      PATH: env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: env.HOME ?? '/root',
      LC_ALL: 'C',
      GIT_TERMINAL_PROMPT: '0',
      HGPLAIN: '1',
    },
  };
}

/** Largest timeout taken (a week): above it, Node's timers would fire at once. */
const MAX_TIMEOUT_SECONDS = 7 * 24 * 3600;

function timeoutSeconds(flag: string | undefined, envValue: string | undefined, flagName: string, envName: string, fallback: number): number {
  const value = flag ?? (envValue || undefined);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d{1,7}$/.test(value) || n === 0 || n > MAX_TIMEOUT_SECONDS) {
    throw errors.usage(`${flag !== undefined ? flagName : envName} "${value}" is not a number of seconds from 1 to ${MAX_TIMEOUT_SECONDS}`);
  }
  return n;
}

function wholeNumber(flag: string | undefined, envValue: string | undefined, flagName: string, envName: string, fallback: number, max: number): number {
  const value = flag ?? (envValue || undefined);
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!/^\d{1,10}$/.test(value) || n < 1 || n > max) throw errors.usage(`${flag !== undefined ? flagName : envName} "${value}" is not a whole number from 1 to ${max}`);
  return n;
}
