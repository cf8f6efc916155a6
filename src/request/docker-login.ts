import { errors } from '../errors.js';
import { shellSplit } from './shell-split.js';
import { normalizeRegistry } from './validate.js';
import type { RegistryLogin } from './types.js';

export interface ParsedLogin extends RegistryLogin {
  /** The registry named in the command; undefined means Docker Hub, as docker login does. */
  server?: string;
}

const FORM = 'write it as: docker login -u USER -p PASSWORD [REGISTRY]';

/**
 * Reads the credentials out of a "docker login …" command line. The command is never
 * run: it is split like a shell would split it and only -u/--username, -p/--password
 * and one registry are accepted.
 */
export function parseDockerLoginCmd(line: string): ParsedLogin {
  const words = shellSplit(line, '--docker_login_cmd', { quoteInput: false });
  if (words[0] !== 'docker' || words[1] !== 'login') {
    throw errors.usage(`--docker_login_cmd must start with "docker login"; ${FORM}`);
  }
  let username: string | undefined;
  let password: string | undefined;
  let server: string | undefined;
  for (let i = 2; i < words.length; i++) {
    const word = words[i];
    const eq = word.indexOf('=');
    const name = word.startsWith('--') && eq > 0 ? word.slice(0, eq) : word;
    const inline = name !== word ? word.slice(eq + 1) : undefined;
    const value = (flag: string) => {
      if (inline !== undefined) return inline;
      const next = words[++i];
      if (next === undefined) throw errors.usage(`--docker_login_cmd: ${flag} needs a value; ${FORM}`);
      return next;
    };
    if (name === '-u' || name === '--username') username = value(name);
    else if (name === '-p' || name === '--password') password = value(name);
    else if (name === '--password-stdin') {
      throw errors.usage(`--docker_login_cmd: --password-stdin cannot be used, there is no stdin to read; ${FORM}`);
    } else if (name.startsWith('-')) {
      // Only a word that looks like an option is named: a misplaced password must not be echoed.
      const shown = /^--?[a-z][a-z-]*$/.test(name) ? ` "${name}"` : '';
      throw errors.usage(`--docker_login_cmd: an option${shown} that is not supported; ${FORM}`);
    } else if (server === undefined) server = normalizeRegistry(word);
    else throw errors.usage(`--docker_login_cmd: more than one word where the registry goes (a misplaced password?); ${FORM}`);
  }
  if (!username) throw errors.usage(`--docker_login_cmd has no username; ${FORM}`);
  if (!password) throw errors.usage(`--docker_login_cmd has no password; ${FORM}`);
  return { username, password, server };
}

/** --docker_login_cache is the "auth" value of ~/.docker/config.json: base64 of user:password. */
export function parseLoginCache(b64: string): RegistryLogin {
  const compact = b64.trim();
  const decoded = /^[A-Za-z0-9+/]+={0,2}$/.test(compact) ? Buffer.from(compact, 'base64').toString('utf8') : '';
  const colon = decoded.indexOf(':');
  if (colon <= 0 || colon === decoded.length - 1) {
    throw errors.invalidInput('--docker_login_cache is not base64 of "user:password" (the "auth" value of ~/.docker/config.json)');
  }
  return { username: decoded.slice(0, colon), password: decoded.slice(colon + 1) };
}
