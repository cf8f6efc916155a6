import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import path from 'node:path';
import tls from 'node:tls';
import type Docker from 'dockerode';
import { BuildError, errors, isBuildError } from '../model/errors.js';
import { REDACTED } from '../io/redact.js';
import { createDocker } from '../docker/engine.js';
import { dockerodeOptions, parseEngineTarget, type EngineTarget } from '../docker/remote.js';

/**
 * The Docker engines one server drives (issue 19): `--engine NAME=URL[,slots=N][,weight=W][,tls=DIR]`,
 * repeatable, or BUILDBOT_ENGINES (the same entries separated by whitespace). Without any, one
 * engine named `default` from DOCKER_HOST and the docker CLI's TLS variables, exactly as before.
 */
export interface EngineSpec {
  /** [a-z0-9-]{1,32}; `default` for the engine of DOCKER_HOST. */
  name: string;
  /** The URL as given (DOCKER_HOST's value, or its default, for `default`): show it through redactEngineUrl. */
  url: string;
  /** Builds at once on this engine (default: --max-builds; --max-builds stays the server's total). */
  slots: number;
  /** Its share of the services in the rendezvous hashing (src/engines/routing.ts), a positive number (default 1). */
  weight: number;
  /** The directory ca.pem, cert.pem and key.pem were read from (tls=DIR, or DOCKER_CERT_PATH for `default`). */
  tlsDir?: string;
  /** Where the engine is and how to reach it, certificates read (src/docker/remote.ts). */
  target: EngineTarget;
  /** For logs and messages, as Config.dockerLabel: no credentials. */
  label: string;
}

type Env = Readonly<Record<string, string | undefined>>;

export interface EngineDefaults {
  /** --max-builds: the slots of an engine whose entry gives none. */
  maxBuilds: number;
  /** Where DOCKER_HOST and friends (the default engine), HOME and the ssh settings are read; process.env if not given. */
  env?: Env;
}

export const DEFAULT_ENGINE = 'default';
const NAME = /^[a-z0-9-]{1,32}$/;
const FORM = 'NAME=URL[,slots=N][,weight=W][,tls=DIR] with NAME of 1 to 32 of a-z, 0-9 and -, and URL unix:///path/to/docker.sock, tcp://host[:port] or ssh://[user@]host[:port]';
const MAX_ENTRY = 4096;
const MAX_SLOTS = 10_000;
const MAX_WEIGHT = 1_000_000;
/** A PEM certificate chain or key is a few KiB; a larger file is not one. */
const MAX_PEM_BYTES = 1024 * 1024;
const SSH_USER = /^[A-Za-z0-9._][A-Za-z0-9._-]*$/;

/** The entries from the --engine flags if any were given, else from BUILDBOT_ENGINES (split on whitespace). */
export function engineEntries(flags: readonly string[] | undefined, env: Env = process.env): string[] {
  if (flags && flags.length > 0) return [...flags];
  return (env.BUILDBOT_ENGINES ?? '').split(/\s+/).filter(Boolean);
}

/**
 * Reads the engine entries; none gives the `default` engine of DOCKER_HOST. Every error is a
 * usage error (exit 2) naming --engine and the entry, its credentials redacted. TLS files are read
 * here, once, so a missing or unusable certificate stops the server at its start.
 */
export function parseEngineSpecs(entries: readonly string[], defaults: EngineDefaults): EngineSpec[] {
  const env = defaults.env ?? process.env;
  if (entries.length === 0) return [defaultEngineSpec(env, defaults.maxBuilds)];
  const specs: EngineSpec[] = [];
  const seen = new Map<string, string>();
  for (const entry of entries) {
    const spec = parseEntry(entry, defaults.maxBuilds, env);
    const earlier = seen.get(spec.name);
    if (earlier !== undefined) {
      throw errors.usage(`--engine ${redactEntry(entry)}: the name ${spec.name} is already taken by --engine ${earlier}; give each engine its own name`);
    }
    seen.set(spec.name, redactEntry(entry));
    specs.push(spec);
  }
  return specs;
}

/** The engine of DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_CERT_PATH (and ssh's settings), read as the server always did. */
export function defaultEngineSpec(env: Env, maxBuilds: number): EngineSpec {
  const { target, label } = parseEngineTarget(env);
  const spec: EngineSpec = { name: DEFAULT_ENGINE, url: env.DOCKER_HOST || 'unix:///var/run/docker.sock', slots: maxBuilds, weight: 1, target, label };
  if (target.kind === 'tcp' && target.tls) spec.tlsDir = env.DOCKER_CERT_PATH || path.join(env.HOME || '/root', '.docker');
  return spec;
}

function parseEntry(entry: string, maxBuilds: number, env: Env): EngineSpec {
  const shown = redactEntry(entry);
  const bad = (problem: string): BuildError => errors.usage(`--engine ${shown}: ${problem}`);
  if (entry.length > MAX_ENTRY) throw errors.usage(`--engine ${shown.slice(0, 100)}…: the entry is longer than ${MAX_ENTRY} characters; give ${FORM}`);
  const eq = entry.indexOf('=');
  const schemeAt = entry.indexOf('://');
  // An = inside the URL (a password may hold one) is not the end of a name.
  if (eq < 0 || (schemeAt >= 0 && schemeAt < eq)) throw bad(`no NAME= before the URL; give ${FORM}`);
  const name = entry.slice(0, eq);
  if (!NAME.test(name)) throw bad(`the name "${name.slice(0, 40)}" is not 1 to 32 of a-z, 0-9 and -; give ${FORM}`);
  const rest = entry.slice(eq + 1);

  // Credentials first, on the whole rest: a password may hold a comma, so nothing is split before.
  const userinfo = userinfoOf(rest);
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(rest)?.[1].toLowerCase();
  if (userinfo !== undefined && userinfo.includes(':')) {
    throw bad('a password in the URL is not supported (and is never shown); reach an ssh:// engine with a key (BUILDBOT_ENGINE_SSH_KEY or the ssh agent), a tcp:// one with client certificates (tls=DIR)');
  }
  if (userinfo !== undefined && scheme !== 'ssh') throw bad('only an ssh:// URL takes a user (ssh://user@host); a tcp:// or unix:// one takes none');
  if (userinfo !== undefined && !SSH_USER.test(decodeURIComponentSafe(userinfo))) throw bad('the SSH user is not a valid user name');

  const [url, ...options] = rest.split(',');
  if (!url) throw bad(`no URL after ${name}=; give ${FORM}`);
  if (scheme !== 'unix' && scheme !== 'tcp' && scheme !== 'ssh') {
    throw bad(scheme === undefined
      ? `the URL has no scheme; give ${FORM}`
      : `the scheme ${scheme}:// is not supported; give unix://, tcp:// (with tls=DIR for TLS) or ssh://`);
  }
  const given = new Map<string, string>();
  for (const option of options) {
    const at = option.indexOf('=');
    const key = at < 0 ? option : option.slice(0, at);
    if (key !== 'slots' && key !== 'weight' && key !== 'tls') throw bad(`unknown option "${key.slice(0, 40)}"; the options are slots=N, weight=W and tls=DIR`);
    if (at < 0 || at === option.length - 1) throw bad(`${key}= needs a value`);
    if (given.has(key)) throw bad(`${key}= is given twice`);
    given.set(key, option.slice(at + 1));
  }

  let slots = maxBuilds;
  const slotsText = given.get('slots');
  if (slotsText !== undefined) {
    if (!/^[1-9][0-9]{0,5}$/.test(slotsText) || Number(slotsText) > MAX_SLOTS) throw bad(`slots=${slotsText.slice(0, 40)} is not a whole number from 1 to ${MAX_SLOTS}`);
    slots = Number(slotsText);
  }
  let weight = 1;
  const weightText = given.get('weight');
  if (weightText !== undefined) {
    if (!/^[0-9]{1,7}(?:\.[0-9]{1,6})?$/.test(weightText) || !(Number(weightText) > 0) || Number(weightText) > MAX_WEIGHT) {
      throw bad(`weight=${weightText.slice(0, 40)} is not a positive number up to ${MAX_WEIGHT} (e.g. 1, 2 or 0.5)`);
    }
    weight = Number(weightText);
  }
  const tlsDir = given.get('tls');
  if (tlsDir !== undefined && scheme !== 'tcp') throw bad('tls=DIR goes with a tcp:// URL only');

  // The URL as DOCKER_HOST would be read, without the server's own TLS variables: an entry says all.
  let parsed: { target: EngineTarget; label: string };
  try {
    parsed = parseEngineTarget({
      DOCKER_HOST: url,
      HOME: env.HOME,
      BUILDBOT_ENGINE_KNOWN_HOSTS: env.BUILDBOT_ENGINE_KNOWN_HOSTS,
      BUILDBOT_ENGINE_SSH_KEY: env.BUILDBOT_ENGINE_SSH_KEY,
      SSH_AUTH_SOCK: env.SSH_AUTH_SOCK,
    });
  } catch (err) {
    if (!isBuildError(err)) throw err;
    // Its messages quote the URL, which holds no credential by now (checked above).
    throw bad(err.message.replace(/DOCKER_HOST:? /g, 'the URL ').replace(/; use unix:\/\/\/path\/to\/docker\.sock.*$/, `; give ${FORM}`));
  }
  const { target } = parsed;
  let label = parsed.label;
  if (tlsDir !== undefined && target.kind === 'tcp') {
    const hasPort = /^tcp:\/\/(?:\[[^\]]*\]|[^/:]*):[0-9]/.test(url);
    if (!hasPort) target.port = 2376;
    const dir = path.resolve(tlsDir);
    const [ca, cert, key] = ['ca.pem', 'cert.pem', 'key.pem'].map((file) => readPem(path.join(dir, file), bad));
    try {
      tls.createSecureContext({ ca, cert, key });
    } catch (err) {
      throw bad(`tls=${tlsDir}: ca.pem, cert.pem and key.pem do not make a usable TLS setup (${(err as Error).message.split('\n')[0]}); give PEM files, the client's key matching its certificate`);
    }
    target.tls = { verify: true, ca, cert, key };
    label = `tcp://${target.host.includes(':') ? `[${target.host}]` : target.host}:${target.port} (TLS, certificate verified, from ${dir})`;
  }
  return { name, url, slots, weight, ...(tlsDir !== undefined ? { tlsDir: path.resolve(tlsDir) } : {}), target, label };
}

/** At most MAX_PEM_BYTES of a regular file; the error names the file. */
function readPem(file: string, bad: (problem: string) => BuildError): Buffer {
  const need = `tls=DIR must hold ca.pem, cert.pem and key.pem, as DOCKER_CERT_PATH does for the docker CLI`;
  let fd: number;
  try {
    // O_NONBLOCK: a FIFO put there does not hang the server's start.
    fd = openSync(file, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    throw bad(`cannot read ${file} (${(err as NodeJS.ErrnoException).code}); ${need}`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw bad(`${file} is not a regular file; ${need}`);
    if (stat.size > MAX_PEM_BYTES) throw bad(`${file} is larger than ${MAX_PEM_BYTES / 1024} KiB, which no PEM certificate or key is; ${need}`);
    const buffer = Buffer.alloc(Math.min(stat.size + 1, MAX_PEM_BYTES + 1));
    let length = 0;
    for (let n; length < buffer.length && (n = readSync(fd, buffer, length, buffer.length - length, null)) > 0;) length += n;
    if (length > MAX_PEM_BYTES) throw bad(`${file} is larger than ${MAX_PEM_BYTES / 1024} KiB, which no PEM certificate or key is; ${need}`);
    if (length === 0) throw bad(`${file} is empty; ${need}`);
    return buffer.subarray(0, length);
  } catch (err) {
    if (isBuildError(err)) throw err;
    throw bad(`cannot read ${file} (${(err as NodeJS.ErrnoException).code}); ${need}`);
  } finally {
    closeSync(fd);
  }
}

/** What stands between :// and the last @ (the authority's user part), if there is an @ after ://. */
function userinfoOf(url: string): string | undefined {
  const scheme = url.indexOf('://');
  const from = scheme < 0 ? 0 : scheme + 3;
  const at = url.lastIndexOf('@');
  return at >= from ? url.slice(from, at) : undefined;
}

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * The URL without credentials, for logs, messages and the API: everything between :// and the
 * last @ is replaced by ***, except an ssh:// user name (not a secret), which stays; a password
 * never shows. The last @, not the first: a password may hold one.
 */
export function redactEngineUrl(url: string): string {
  const userinfo = userinfoOf(url);
  if (userinfo === undefined) return url;
  const start = url.indexOf('://') < 0 ? 0 : url.indexOf('://') + 3;
  const isSsh = /ssh:\/\/$/i.test(url.slice(0, start));
  const user = userinfo.split(':')[0];
  const keep = isSsh && !userinfo.includes(':') && SSH_USER.test(user);
  return `${url.slice(0, start)}${keep ? user : REDACTED}${url.slice(start + userinfo.length)}`;
}

/** An --engine entry for a message: its URL's credentials redacted (the whole rest of the entry after NAME=). */
export function redactEntry(entry: string): string {
  const eq = entry.indexOf('=');
  const scheme = entry.indexOf('://');
  // NAME= is kept only when it comes before the URL's scheme (a password may hold an =).
  if (eq < 0 || (scheme >= 0 && eq > scheme)) return redactEngineUrl(entry);
  return `${entry.slice(0, eq + 1)}${redactEngineUrl(entry.slice(eq + 1))}`;
}

/** dockerode's options for the engine: src/docker/remote.ts's mapping, the one the single engine always used. */
export function engineDockerodeOptions(spec: EngineSpec, toolEnv: Record<string, string>): Docker.DockerOptions {
  return dockerodeOptions(spec.target, toolEnv) as Docker.DockerOptions;
}

/** The engine's client, made by src/docker/engine.ts's createDocker as the single one always was. */
export function createEngineDocker(spec: EngineSpec, toolEnv: Record<string, string>): Docker {
  return createDocker(spec.target, toolEnv);
}
