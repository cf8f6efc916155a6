import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { buildLimitsFrom, type BuildLimits } from './docker/limits.js';
import { parseEngineTarget, type EngineTarget } from './docker/remote.js';

/** The server's own settings (never a build's): defaults, then environment and flags, then validation. */
export interface Config {
  /** Clone caches, pinned git host keys and locks live here. */
  workDir: string;
  /** The engine, from DOCKER_HOST and the docker CLI's TLS variables (src/docker/remote.ts). */
  docker: EngineTarget;
  /** How the engine is named in error messages. */
  dockerLabel: string;
  /** Network of the builder and test containers; undefined keeps the engine's default. */
  buildNetwork?: string;
  /** Memory and process limits of the builder and test containers (src/docker/limits.ts). */
  buildLimits: BuildLimits;
  /** The environment git, hg and ssh run with: only what they need, none of the server's secrets. */
  toolEnv: Record<string, string>;
  /** BUILDBOT_TRACE=1: log where each build's time goes, per step (engine, git, own CPU). */
  trace: boolean;
  /**
   * Seconds an idle SSH connection to a git host stays open for the next build with the same
   * key (src/vcs/ssh-master.ts); 0: none. Only the server sets it: a one-shot buildbot.sh would
   * leave the connection behind.
   */
  gitSshPersistSeconds: number;
}

type Env = Readonly<Record<string, string | undefined>>;

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ConfigOverrides {
  workDir?: string;
  /** --build-memory / --build-pids of the server, over BUILDBOT_BUILD_MEMORY / BUILDBOT_BUILD_PIDS. */
  buildMemory?: { value: string; setting: string };
  buildPids?: { value: string; setting: string };
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
    trace: env.BUILDBOT_TRACE === '1',
    gitSshPersistSeconds: 0,
    toolEnv: {
      PATH: env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: env.HOME ?? '/root',
      LC_ALL: 'C',
      GIT_TERMINAL_PROMPT: '0',
      HGPLAIN: '1',
    },
  };
}
