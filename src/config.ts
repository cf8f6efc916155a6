import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { errors } from './errors.js';

/** The server's own settings (never a build's): defaults, then environment and flags, then validation. */
export interface Config {
  /** Clone caches, pinned git host keys and locks live here. */
  workDir: string;
  docker: { socketPath: string } | { host: string; port: number; protocol: 'http' | 'https' };
  /** How the engine is named in error messages. */
  dockerLabel: string;
  /** Network of the builder and test containers; undefined keeps the engine's default. */
  buildNetwork?: string;
  /** The environment git, hg and ssh run with: only what they need, none of the server's secrets. */
  toolEnv: Record<string, string>;
  /** BUILDBOT_TRACE=1: log where each build's time goes, per step (engine, git, own CPU). */
  trace: boolean;
}

type Env = Readonly<Record<string, string | undefined>>;

export const PACKAGE_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ConfigOverrides {
  workDir?: string;
}

export function loadConfig(env: Env, overrides: ConfigOverrides = {}): Config {
  const workDir = path.resolve(overrides.workDir ?? env.BUILDBOT_WORK_DIR ?? path.join(PACKAGE_ROOT, 'buildbot-work'));
  const dockerHost = env.DOCKER_HOST || 'unix:///var/run/docker.sock';
  return {
    workDir,
    ...parseDockerHost(dockerHost),
    buildNetwork: env.BUILDBOT_BUILD_NETWORK || undefined,
    trace: env.BUILDBOT_TRACE === '1',
    toolEnv: {
      PATH: env.PATH ?? '/usr/local/bin:/usr/bin:/bin',
      HOME: env.HOME ?? '/root',
      LC_ALL: 'C',
      GIT_TERMINAL_PROMPT: '0',
      HGPLAIN: '1',
    },
  };
}

function parseDockerHost(value: string): Pick<Config, 'docker' | 'dockerLabel'> {
  if (value.startsWith('unix://')) return { docker: { socketPath: value.slice('unix://'.length) }, dockerLabel: value.slice(7) };
  const match = /^(tcp|http|https):\/\/([^:/]+):(\d+)\/?$/.exec(value);
  if (!match) throw errors.usage(`DOCKER_HOST "${value}" is not understood; use unix:///path/to/docker.sock or tcp://host:port`);
  const protocol = match[1] === 'https' ? 'https' : 'http';
  return { docker: { host: match[2], port: Number(match[3]), protocol }, dockerLabel: value };
}
