import { errors } from '../model/errors.js';
import { isRegistryLike, normalizeLoginServer } from './registry.js';
import { shellSplit } from './shell-split.js';
import type { RegistryLogin } from './types.js';

export interface ParsedLogin extends RegistryLogin {
  /** The registry named in the command, normalized; undefined means Docker Hub, as docker login does. */
  server?: string;
  /** Said on stdout when the build starts (an option that was read and ignored). */
  notes: string[];
}

const WHAT = '--docker_login_cmd';
const FORM = 'write it as: docker login -u USER -p PASSWORD [REGISTRY]';
const WORKING_FORM = 'e.g. --docker_login_cmd "docker login -u AWS -p $(aws ecr get-login-password) 123456789012.dkr.ecr.us-east-1.amazonaws.com" (the shell that runs buildbot.sh fills in the password)';

/** What a pflag-style scan of `docker login`'s words found. Never throws: the secret extractor uses it on any input. */
interface LoginWords {
  username?: string;
  /** Every value given to -p/--password (the last one counts, as in pflag). */
  passwords: string[];
  email?: string;
  passwordStdin: boolean;
  positionals: string[];
  /** Words that look like options docker login does not have, or that buildbot does not read. */
  unknown: string[];
  /** An option given without its value. */
  missingValue?: string;
}

const VALUE_OPTIONS: Record<string, 'username' | 'password' | 'email'> = {
  u: 'username', username: 'username', p: 'password', password: 'password', e: 'email', email: 'email',
};

/**
 * Reads the words after "docker login" as the docker CLI's flag library (pflag) does:
 * --name VALUE, --name=VALUE, -n VALUE, -nVALUE, -n=VALUE; a value may start with "-";
 * "--" ends the options; options and the registry may come in any order.
 */
function scanLoginWords(words: readonly string[]): LoginWords {
  const found: LoginWords = { passwords: [], passwordStdin: false, positionals: [], unknown: [] };
  const take = (option: string, value: string) => {
    const field = VALUE_OPTIONS[option];
    if (field === 'password') found.passwords.push(value);
    else found[field] = value;
  };
  for (let i = 0; i < words.length; i++) {
    const word = words[i];
    if (word === '--') {
      found.positionals.push(...words.slice(i + 1));
      break;
    }
    if (word.startsWith('--')) {
      const eq = word.indexOf('=');
      const name = word.slice(2, eq < 0 ? undefined : eq);
      if (name === 'password-stdin') found.passwordStdin = true;
      else if (name in VALUE_OPTIONS && name.length > 1) {
        if (eq >= 0) take(name, word.slice(eq + 1));
        else if (i + 1 < words.length) take(name, words[++i]);
        else found.missingValue = `--${name}`;
      } else found.unknown.push(word);
    } else if (word.startsWith('-') && word.length > 1) {
      const name = word[1];
      if (name in VALUE_OPTIONS) {
        if (word.length > 2) take(name, word.slice(word[2] === '=' ? 3 : 2));
        else if (i + 1 < words.length) take(name, words[++i]);
        else found.missingValue = `-${name}`;
      } else found.unknown.push(word);
    } else {
      found.positionals.push(word);
    }
  }
  return found;
}

/**
 * Reads the credentials out of a "docker login …" command line. The command is never run:
 * it is split like a shell would split it and read like the docker CLI reads it. No error
 * quotes a word of it, since any word may be a misplaced password.
 */
export function parseDockerLoginCmd(line: string, what = WHAT): ParsedLogin {
  const words = shellSplit(line, what, { quoteInput: false });
  if (words[0] !== 'docker' || words[1] !== 'login') {
    throw errors.usage(`${what} must start with "docker login"; ${FORM}`);
  }
  const found = scanLoginWords(words.slice(2));
  if (found.passwordStdin) {
    throw errors.usage(`${what}: --password-stdin cannot be used, nothing is piped to the build; pass the password with -p, ${WORKING_FORM}`);
  }
  if (found.missingValue) throw errors.usage(`${what}: ${found.missingValue} needs a value; ${FORM}`);
  if (found.unknown.length) {
    throw errors.usage(
      `${what}: an option that docker login does not have or that is of no use here (not shown, in case it is a misplaced password); ` +
        `only -u/--username, -p/--password and -e/--email are read; ${FORM}`,
    );
  }
  const password = found.passwords.at(-1);
  if (found.positionals.length > 1) {
    throw errors.usage(`${what}: more than one word where the registry goes (a misplaced password, or one with a space that needs quotes?); ${FORM}`);
  }
  let server: string | undefined;
  if (found.positionals.length === 1) {
    // "-p REGISTRY PASSWORD": a registry where the password goes, and a word that is no registry where the registry goes.
    if (password !== undefined && isRegistryLike(password) && !isRegistryLike(found.positionals[0])) throw swapped(what);
    try {
      server = normalizeLoginServer(found.positionals[0], what);
    } catch (err) {
      if (password !== undefined && isRegistryLike(password)) throw swapped(what);
      throw err;
    }
  }
  if (!found.username) throw errors.usage(`${what} has no username; ${FORM}`);
  if (!password) throw errors.usage(`${what} has no password; ${FORM}`);
  const notes = found.email === undefined ? [] : [`note: ${what}: -e/--email is ignored (docker login dropped it in Docker 17.06; registries never used it)`];
  return { username: found.username, password, server, notes };
}

export const swapped = (what: string) =>
  errors.usage(`${what}: the password and the registry look swapped: -p takes the password and the registry comes last; ${FORM}`);

/**
 * Every word of a login command that may be a secret, found without failing whatever the
 * command looks like: each -p value, and every other word that is neither docker's syntax,
 * the username, the e-mail nor a registry name. Taken before parsing, so that an error
 * about the command can be redacted.
 */
export function loginCmdSecrets(line: string): string[] {
  let words: string[];
  try {
    words = shellSplit(line, WHAT, { quoteInput: false });
  } catch {
    // Unparseable: every whitespace-separated piece and every quoted stretch.
    words = [...line.split(/\s+/), ...[...line.matchAll(/'([^']*)'|"([^"]*)"/g)].map((m) => m[1] ?? m[2])].map((w) => w.replace(/^['"]|['"]$/g, ''));
  }
  const start = words[0] === 'docker' && words[1] === 'login' ? 2 : 0;
  const found = scanLoginWords(words.slice(start));
  // The command's own words alone ("docker", a value cut off after "docker login") hold no secret,
  // and redacting them would garble every message that names --docker_login_cmd.
  const loose = [line, line.trim(), ...found.unknown, ...found.positionals.filter((w) => !isRegistryLike(w))].filter((w) => w.length >= 4 && !COMMAND_WORDS.test(w));
  return [...found.passwords.filter(Boolean), ...loose];
}

const COMMAND_WORDS = /^\s*(docker|login|docker\s+login)\s*$/;

/**
 * The secrets in a buildbot.sh command line's login and build secret flags, read from the raw
 * arguments before any parsing (for redacting usage errors). Recognizes --docker_login_cmd,
 * --docker_login_cache and --build_secret as separate words or with "=".
 */
export function loginSecretsFromArgv(argv: readonly string[]): string[] {
  const secrets: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const match = /^--?(docker_login_cmd|docker_login_cache|build_secret)(?:=(.*))?$/s.exec(argv[i]);
    if (!match) continue;
    const value = match[2] ?? argv[i + 1];
    if (value === undefined) continue;
    if (match[1] === 'docker_login_cmd') secrets.push(...loginCmdSecrets(value));
    else if (match[1] === 'docker_login_cache') secrets.push(...loginCacheSecrets(value));
    else secrets.push(value, value.slice(value.indexOf('=') + 1));
  }
  return [...new Set(secrets.filter(Boolean))];
}

/** A login cache value in each form it may be shown in, and what it decodes to if that is readable. */
export function loginCacheSecrets(value: string): string[] {
  const compact = value.replace(/\s+/g, '');
  const out = [value, value.trim(), compact];
  try {
    const { login } = parseLoginCache(value, '', WHAT);
    if (login) out.push(login.password);
  } catch {
    // Not readable: the raw forms above are all there is.
  }
  return out;
}

const MAX_CACHE = 1024 * 1024;

interface DockerConfig {
  auths?: Record<string, { auth?: unknown; username?: unknown; password?: unknown; identitytoken?: unknown; registrytoken?: unknown } | null>;
  credsStore?: unknown;
  credHelpers?: Record<string, unknown>;
}

/**
 * --docker_login_cache: what the original script looked for in ~/.docker/config.json, the
 * "auth" value (base64 of user:password), or base64 of a whole config.json, whose "auths"
 * entry for `registry` is used (keys in any form docker writes: host, https://host, host/v1/).
 */
export function parseLoginCache(value: string, registry: string, what = '--docker_login_cache'): { login: RegistryLogin } {
  const neither =
    `${what} is neither the "auth" value of ~/.docker/config.json (base64 of user:password) nor base64 of a whole config.json; ` +
    `give e.g. $(jq -r '.auths["${registry || 'REGISTRY'}"].auth' ~/.docker/config.json) or $(base64 -w0 ~/.docker/config.json)`;
  if (value.length > MAX_CACHE) throw errors.usage(`${what} is longer than ${MAX_CACHE} bytes; ${neither}`);
  // A trailing newline (echo, base64 without -w0) is not part of the value.
  const compact = value.replace(/\s+/g, '');
  if (!compact || !/^[A-Za-z0-9+/]+={0,2}$/.test(compact) || compact.length % 4 === 1) throw errors.usage(neither);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.from(compact, 'base64'));
  } catch {
    throw errors.usage(neither);
  }
  if (text.trimStart().startsWith('{')) return { login: fromConfig(text, registry, what, neither) };
  const login = userPassword(text.replace(/\r?\n$/, ''));
  if (!login) throw errors.usage(neither);
  return { login };
}

function userPassword(text: string): RegistryLogin | undefined {
  const colon = text.indexOf(':');
  const username = text.slice(0, colon);
  const password = text.slice(colon + 1);
  // A piece of a base64 config.json can decode to something with a colon: a real username has
  // no quotes, braces, white space or control characters, and neither part has line breaks.
  if (colon <= 0 || !password || /[\s"{}\x00-\x1f\x7f]/.test(username) || /[\r\n\x00]/.test(password)) return undefined;
  return { username, password };
}

function fromConfig(text: string, registry: string, what: string, neither: string): RegistryLogin {
  let config: DockerConfig;
  try {
    config = JSON.parse(text) as DockerConfig;
  } catch {
    throw errors.usage(`${what} decodes to text starting with "{" that is not valid JSON (cut short?); ${neither}`);
  }
  if (!config || typeof config !== 'object' || Array.isArray(config)) throw errors.usage(neither);
  const auths = config.auths && typeof config.auths === 'object' ? config.auths : {};
  const keys = Object.keys(auths);
  const known: string[] = [];
  let entry: NonNullable<DockerConfig['auths']>[string] | undefined;
  for (const key of keys) {
    let host: string;
    try {
      host = normalizeLoginServer(key, what);
    } catch {
      continue;
    }
    known.push(host);
    if (host === registry && auths[key] && typeof auths[key] === 'object') entry = auths[key];
  }
  if (!entry) {
    const helper = config.credsStore || config.credHelpers ? ' (this config.json keeps its passwords in a credential helper, which is not in the file)' : '';
    throw errors.usage(`${what}: the config.json has no "auths" entry for ${registry}, the registry of --image${helper}; it has entries for: ${known.join(', ') || 'none'}`);
  }
  if (typeof entry.identitytoken === 'string' && entry.identitytoken) {
    throw errors.usage(
      `${what}: the config.json entry for ${registry} holds an identity token (an OAuth refresh token), which buildbot cannot use; ` +
        'give a username and password or access token instead, with --docker_login_cmd "docker login -u USER -p TOKEN REGISTRY"',
    );
  }
  if (typeof entry.auth === 'string' && entry.auth) {
    let decoded: RegistryLogin | undefined;
    try {
      decoded = userPassword(Buffer.from(entry.auth, 'base64').toString('utf8'));
    } catch {
      decoded = undefined;
    }
    if (!decoded) throw errors.usage(`${what}: the "auth" value of the config.json entry for ${registry} is not base64 of user:password`);
    return decoded;
  }
  if (typeof entry.username === 'string' && entry.username && typeof entry.password === 'string' && entry.password) {
    return { username: entry.username, password: entry.password };
  }
  throw errors.usage(`${what}: the config.json entry for ${registry} holds no credentials (no "auth" value); run docker login without a credential helper, or use --docker_login_cmd`);
}
