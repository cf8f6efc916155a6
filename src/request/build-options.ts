import path from 'node:path';
import { errors } from '../model/errors.js';
import { splitImageRef } from './registry.js';

/** How the image is built: what `docker build` takes on its command line, as far as it makes sense here. */
export interface BuildOptions {
  /** --build-arg NAME=VALUE */
  args: Record<string, string>;
  /** --target STAGE */
  target?: string;
  /** --platform os/arch[/variant] */
  platform?: string;
  /** The Dockerfile, relative to the context root, '/'-separated, normalized. */
  dockerfile: string;
  /** --pull: always look for a newer base image. */
  pull: boolean;
  /** --cache-from: images (with the registry host normalized) whose inline cache may be used. */
  cacheFrom: string[];
  /** --no-cache */
  noCache: boolean;
  /** RUN --mount=type=secret,id=ID: values by id, served by the BuildKit session. */
  secrets: Record<string, string>;
  /** --no_build_cache: build.sh's #build_cache paths get fresh volumes; the kept ones stay as they are. */
  noBuildCache: boolean;
  /** --reset_build_cache: the service's kept caches are removed before build.sh, and made again empty. */
  resetBuildCache: boolean;
}

export const DEFAULT_DOCKERFILE = 'Dockerfile';

/** What a build without build flags gets. */
export const defaultBuildOptions = (): BuildOptions => ({ args: {}, dockerfile: DEFAULT_DOCKERFILE, pull: false, cacheFrom: [], noCache: false, secrets: {}, noBuildCache: false, resetBuildCache: false });
const MAX_ITEMS = 100;
const MAX_VALUE = 64 * 1024;
const NAME = /^[A-Za-z_][A-Za-z0-9_]{0,127}$/;
const SECRET_ID = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;
const STAGE = /^[A-Za-z][A-Za-z0-9_.-]{0,127}$/;
const PLATFORM = /^[a-z0-9_]{1,32}(?:\/[a-z0-9_]{1,32}){0,2}$/;

type Raw = Record<string, unknown>;

const list = (value: unknown): string[] => (value === undefined ? [] : (Array.isArray(value) ? value : [value]).map(String));

function single(args: Raw, flag: string): string | undefined {
  const value = args[flag];
  if (Array.isArray(value)) throw errors.usage(`--${flag} was given more than once`);
  return value === undefined ? undefined : String(value);
}

function bool(args: Raw, flag: string): boolean {
  const value = args[flag];
  if (Array.isArray(value)) throw errors.usage(`--${flag} was given more than once`);
  return value === true || value === 'true';
}

/** NAME=VALUE pairs of a repeatable flag; `secret` keeps values out of error messages. */
function pairs(values: string[], flag: string, name: RegExp, nameRule: string, secret: boolean): Record<string, string> {
  if (values.length > MAX_ITEMS) throw errors.usage(`--${flag} was given more than ${MAX_ITEMS} times`);
  const out: Record<string, string> = Object.create(null) as Record<string, string>;
  for (const item of values) {
    const eq = item.indexOf('=');
    const key = eq < 0 ? item : item.slice(0, eq);
    // The name is shown only when it has the form of a name: a misplaced secret is not echoed.
    const shown = name.test(key) ? ` "${key}"` : '';
    if (eq < 0) {
      throw errors.usage(`--${flag}${secret ? '' : shown} has no "="; give NAME=VALUE (nothing is taken from the server's environment)`);
    }
    if (!name.test(key)) throw errors.invalidInput(`--${flag}: the name before "=" is not valid; ${nameRule}`);
    if (key in out) throw errors.usage(`--${flag}${shown} was given twice`);
    const value = item.slice(eq + 1);
    if (value.length > MAX_VALUE) throw errors.invalidInput(`--${flag}${shown}: the value is longer than ${MAX_VALUE / 1024} KiB`);
    out[key] = value;
  }
  return out;
}

/**
 * A Dockerfile path inside the repository: relative, no "..", nothing a shell or tar would read differently.
 * `name` is what the user wrote it in (--dockerfile, or build.sh's #build_inside_dockerfile line).
 */
export function validateDockerfilePath(raw: string, name = '--dockerfile', example = 'docker/Dockerfile.prod'): string {
  const rule = `give a path relative to the repository root, e.g. ${example}`;
  if (!raw || raw.length > 255) throw errors.invalidInput(`${name} must be 1 to 255 characters; ${rule}`);
  if (/[\x00-\x1f\x7f\\]/.test(raw)) throw errors.invalidInput(`${name} holds control characters or a backslash; ${rule}`);
  if (raw.startsWith('/')) throw errors.invalidInput(`${name} "${raw}" is absolute; ${rule}`);
  if (raw.split('/').includes('..')) throw errors.invalidInput(`${name} "${raw}" has a ".." part; it must stay inside the repository; ${rule}`);
  const normalized = path.posix.normalize(raw);
  if (normalized === '.' || normalized.endsWith('/') || normalized.split('/').some((part) => part === '.git' || part === '.hg')) {
    throw errors.invalidInput(`${name} "${raw}" names no file of the repository; ${rule}`);
  }
  return normalized;
}

/** Reads the build flags (already parsed by yargs) into BuildOptions; build secrets go on `secrets`. */
export function readBuildOptions(args: Raw, secrets: string[]): BuildOptions {
  const secretValues = pairs(list(args.build_secret), 'build_secret', SECRET_ID, 'use letters, digits, "_", "." and "-"', true);
  for (const value of Object.values(secretValues)) if (value) secrets.push(value, Buffer.from(value).toString('base64'));
  const target = single(args, 'target');
  if (target !== undefined && !STAGE.test(target)) throw errors.invalidInput(`--target "${target}" is not a stage name; give the name after AS in a FROM line`);
  const platform = single(args, 'platform');
  if (platform !== undefined && !PLATFORM.test(platform)) {
    throw errors.invalidInput(`--platform "${platform}" is not one platform; give os/arch[/variant], e.g. linux/amd64 or linux/arm64 (one platform: the image is pushed as one manifest)`);
  }
  const cacheFrom = list(args.cache_from).flatMap((v) => v.split(',')).map((v) => v.trim()).filter(Boolean);
  if (cacheFrom.length > MAX_ITEMS) throw errors.usage(`--cache_from was given more than ${MAX_ITEMS} times`);
  const dockerfile = single(args, 'dockerfile');
  const noBuildCache = bool(args, 'no_build_cache');
  const resetBuildCache = bool(args, 'reset_build_cache');
  if (noBuildCache && resetBuildCache) throw errors.usage('--no_build_cache and --reset_build_cache were both given; give one: fresh caches for this build only, or the kept ones emptied first');
  return {
    args: pairs(list(args.build_arg), 'build_arg', NAME, 'a build argument name is letters, digits and "_", not starting with a digit', false),
    target,
    platform,
    dockerfile: dockerfile === undefined ? DEFAULT_DOCKERFILE : validateDockerfilePath(dockerfile),
    pull: bool(args, 'pull'),
    cacheFrom: [...new Set(cacheFrom.map((ref) => splitImageRef(ref, '--cache_from').ref))],
    noCache: bool(args, 'no_cache'),
    secrets: secretValues,
    noBuildCache,
    resetBuildCache,
  };
}

/** The flags, for the parser. */
export const BUILD_FLAGS = {
  build_arg: { type: 'string', describe: 'NAME=VALUE for an ARG of the Dockerfile; repeat it for more' },
  target: { type: 'string', describe: 'build up to this stage of a multi-stage Dockerfile' },
  platform: { type: 'string', describe: 'os/arch[/variant] to build for, e.g. linux/arm64' },
  dockerfile: { type: 'string', describe: 'the Dockerfile, relative to the repository root (default: Dockerfile)' },
  pull: { type: 'boolean', describe: 'always pull the base images, even when the engine has them' },
  cache_from: { type: 'string', describe: 'an image in the registry whose layers may be reused (inline cache); repeat it or give a comma-separated list' },
  no_cache: { type: 'boolean', describe: 'use no cached layers' },
  build_secret: { type: 'string', describe: 'ID=VALUE for RUN --mount=type=secret,id=ID; repeat it for more; redacted' },
  no_build_cache: { type: 'boolean', describe: 'build.sh gets fresh caches at its #build_cache paths; the kept ones are left as they are' },
  reset_build_cache: { type: 'boolean', describe: 'empty the service\'s kept #build_cache caches before build.sh runs' },
} as const;
