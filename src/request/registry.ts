import { BuildError, errors } from '../model/errors.js';

/**
 * One place that says which registry an image name, a login server or a config.json key
 * names, by docker's own rules (distribution/reference's splitDockerDomain), so the login
 * check, the push, the builder image pull and BuildKit's credential answers always agree.
 */

export const DOCKER_HUB = 'docker.io';
/** What the engine and BuildKit may call Docker Hub. */
const HUB_ALIASES = new Set([DOCKER_HUB, 'index.docker.io', 'registry-1.docker.io']);

const MAX_NAME = 255;
// distribution/reference's grammar. Every input is capped at MAX_NAME first, so no pattern
// here runs on more than a few hundred characters.
const HOST = /^(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)*|\[[0-9a-f:.]+\])(?::[0-9]{1,5})?$/;
const PATH_COMPONENT = '[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*';
const PATH = new RegExp(`^${PATH_COMPONENT}(?:/${PATH_COMPONENT})*$`);

export interface ImageName {
  /** host[:port] in lowercase, or docker.io. */
  registry: string;
  /** The repository path inside the registry, e.g. team/api. */
  path: string;
  /** The name to hand the engine: the registry's host as normalized here, the path as given. */
  name: string;
}

/**
 * Splits a repository name (no tag, no digest) into registry and path exactly as docker does:
 * the first component is a registry iff it holds "." or ":" or is "localhost". docker also
 * takes a first component with capitals for a host (`Regsvc/api` is pushed to a host "Regsvc"),
 * which looks like a Docker Hub account to a reader: that name is refused. `what` names the
 * input in errors (e.g. "--image").
 */
export function splitImageName(input: string, what: string): ImageName {
  if (input.length > MAX_NAME) throw errors.invalidInput(`${what} is longer than ${MAX_NAME} characters`);
  const slash = input.indexOf('/');
  const first = slash < 0 ? '' : input.slice(0, slash);
  let registry = DOCKER_HUB;
  let path = input;
  if (slash >= 0 && (/[.:]/.test(first) || first === 'localhost')) {
    registry = hostOf(first, what, input);
    path = input.slice(slash + 1);
  } else if (slash >= 0 && first !== first.toLowerCase()) {
    throw errors.invalidInput(
      `${what} "${input}": its first part "${first}" has capital letters, so docker would take it for a registry host, not a Docker Hub account; ` +
        `write the registry's full host name (e.g. ${first.toLowerCase()}.example.com/${input.slice(slash + 1)}) or the Docker Hub account in lowercase (${first.toLowerCase()}/${input.slice(slash + 1)})`,
    );
  }
  if (!PATH.test(path)) {
    throw errors.invalidInput(`${what} "${input}" is not a valid image name; use lowercase letters, digits and separators, e.g. registry.example.com/team/api`);
  }
  return { registry, path, name: registry === DOCKER_HUB ? path : `${registry}/${path}` };
}

/**
 * The registry of an image reference that may carry a tag or a digest (a builder image,
 * a --cache_from image). Returns the reference to hand the engine with the host normalized.
 */
export function splitImageRef(ref: string, what: string): ImageName & { ref: string } {
  if (ref.length > MAX_NAME * 2) throw errors.invalidInput(`${what} is longer than ${MAX_NAME * 2} characters`);
  const at = ref.indexOf('@');
  const beforeDigest = at < 0 ? ref : ref.slice(0, at);
  const digest = at < 0 ? '' : ref.slice(at);
  if (digest && !/^@[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$/.test(digest)) {
    throw errors.invalidInput(`${what} "${ref}" has a digest docker cannot read; write NAME@sha256:HEX`);
  }
  const lastSlash = beforeDigest.lastIndexOf('/');
  const colon = beforeDigest.indexOf(':', lastSlash + 1);
  const tag = colon < 0 ? '' : beforeDigest.slice(colon);
  if (tag && !/^:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/.test(tag)) throw errors.invalidInput(`${what} "${ref}" has a tag docker cannot read`);
  const parsed = splitImageName(colon < 0 ? beforeDigest : beforeDigest.slice(0, colon), what);
  return { ...parsed, ref: `${parsed.name}${tag}${digest}` };
}

/**
 * The registry a login names: `docker login` accepts it with or without a scheme, with a
 * trailing slash or docker's own /v1/ or /v2/ path, and config.json keys come in all those
 * forms. The input may be a misplaced password, so errors never quote it.
 */
export function normalizeLoginServer(input: string, what: string): string {
  if (input.length > MAX_NAME) throw errors.invalidInput(`${what}: the registry is longer than ${MAX_NAME} characters`);
  let rest = input;
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(rest);
  if (scheme) {
    if (!/^https?$/i.test(scheme[1])) throw errors.invalidInput(`${what}: the registry has a scheme other than https:// or http://; give host[:port]`);
    rest = rest.slice(scheme[0].length);
  }
  const slash = rest.indexOf('/');
  const host = slash < 0 ? rest : rest.slice(0, slash);
  const path = slash < 0 ? '' : rest.slice(slash);
  if (!/^(?:\/|\/v[12]\/?)?$/i.test(path)) {
    throw errors.invalidInput(`${what}: the registry has a path; a registry is host[:port] (optionally https:// before it or /v2/ after it), the path belongs in --image`);
  }
  return hostOf(host, what);
}

/** Whether a string is a registry docker would accept (for telling a registry from a misplaced password). */
export function isRegistryLike(input: string): boolean {
  try {
    const host = normalizeLoginServer(input, '');
    return host === DOCKER_HUB || host === 'localhost' || /[.:]/.test(host);
  } catch (err) {
    if (err instanceof BuildError) return false;
    throw err;
  }
}

/** A host as BuildKit names it in a credential request (registry-1.docker.io for Hub), normalized. */
export function registryOfHost(host: string): string | undefined {
  try {
    return hostOf(host, '');
  } catch {
    return undefined;
  }
}

/** The engine's name for a registry in an authconfig (it names Docker Hub by its old v1 address). */
export function engineServerAddress(registry: string): string {
  return registry === DOCKER_HUB ? 'https://index.docker.io/v1/' : registry;
}

function hostOf(raw: string, what: string, quoted?: string): string {
  const host = raw.toLowerCase();
  if (!HOST.test(host)) {
    const shown = quoted === undefined ? 'the registry' : `"${quoted}": the registry "${raw}"`;
    throw errors.invalidInput(`${what}${what ? ': ' : ''}${shown} is not a host name docker accepts; use host[:port] in letters, digits, "." and "-", e.g. registry.example.com:5000`);
  }
  const port = /:(\d+)$/.exec(host)?.[1];
  if (port !== undefined && (Number(port) < 1 || Number(port) > 65535)) throw errors.invalidInput(`${what}: the registry's port is not between 1 and 65535`);
  return HUB_ALIASES.has(host) ? DOCKER_HUB : host;
}
