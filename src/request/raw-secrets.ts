import { loginCacheSecrets, loginCmdSecrets, loginSecretsFromArgv } from './docker-login.js';

type Env = Readonly<Record<string, string | undefined>>;

/** Where a local run may pass secrets instead of argv (kept in step with SECRET_ENV in parse.ts). */
const SECRET_VARIABLES = {
  repoAuthKey: 'BUILDBOT_REPO_AUTH_KEY',
  loginCmd: 'BUILDBOT_DOCKER_LOGIN_CMD',
  loginCache: 'BUILDBOT_DOCKER_LOGIN_CACHE',
  registryPassword: 'BUILDBOT_REGISTRY_PASSWORD',
} as const;

const BASE64_WORD = /^[A-Za-z0-9+/]+=*$/;
/** A continuation word shorter than this is not redacted: it would hide common words everywhere. */
const MIN_FRAGMENT = 8;

/**
 * Every secret the raw arguments of one call may hold, read before (and whatever the outcome
 * of) parsing them, so that no error, a usage error included, can echo one. Lenient on
 * purpose: the arguments may be malformed in any way (a key wrapped by base64 at 76 columns
 * arrives as several words, a URL with a "/" in its password does not parse as a URL, a login
 * command may have spilled into argv unquoted). Over-collecting is harmless; missing one leaks.
 *
 * The login command's and login cache's own extraction lives in docker-login.ts, next to their
 * parser (loginSecretsFromArgv, loginCmdSecrets, loginCacheSecrets), and is called from here.
 */
export function secretsInRawArguments(argv: readonly string[], env: Env = {}): string[] {
  const secrets: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const flag = /^--?([A-Za-z][\w-]*)(?:=([\s\S]*))?$/.exec(argv[i]);
    const name = flag?.[1].replace(/-/g, '_');
    if (name === 'repo_auth_key') {
      const words: string[] = [];
      if (flag![2] !== undefined) words.push(flag![2]);
      else if (i + 1 < argv.length) words.push(argv[++i]);
      // A wrapped key's further lines follow as words of their own.
      while (i + 1 < argv.length && isKeyContinuation(argv[i + 1])) words.push(argv[++i]);
      secrets.push(...keySecrets(words));
    }
  }
  // Credentials in a URL, wherever the URL stands (a misplaced --repo value is still one).
  for (const word of argv) secrets.push(...urlCredentialSecrets(word));
  secrets.push(...loginSecretsFromArgv(argv), ...spilledPasswords(argv));

  const key = env[SECRET_VARIABLES.repoAuthKey];
  if (key) secrets.push(...keySecrets([key]));
  const cmd = env[SECRET_VARIABLES.loginCmd];
  if (cmd) secrets.push(...loginCmdSecrets(cmd));
  const cache = env[SECRET_VARIABLES.loginCache];
  if (cache) secrets.push(...loginCacheSecrets(cache));
  const password = env[SECRET_VARIABLES.registryPassword];
  if (password) secrets.push(password, encodeURIComponent(password));
  return [...new Set(secrets.filter((s) => s.length > 0))];
}

function isKeyContinuation(word: string): boolean {
  return !word.startsWith('-') && (BASE64_WORD.test(word) || /^[\w+/=-]+$/.test(word)) && word.length >= 4;
}

/** A key given as base64 (of the file, possibly in several words) or as its text. */
function keySecrets(words: string[]): string[] {
  const secrets = words.filter((w) => w.length >= MIN_FRAGMENT);
  const joined = words.join('');
  const text = words.join(' ').trim();
  secrets.push(words.join(' '), words.join('\n'), joined, text);
  const candidates = [text];
  if (BASE64_WORD.test(joined)) candidates.push(Buffer.from(joined, 'base64').toString('utf8'));
  for (const candidate of candidates) {
    const normalized = candidate.replace(/\r\n/g, '\n').trim();
    secrets.push(normalized, Buffer.from(`${normalized}\n`).toString('base64'));
    // Every line of the key's body, and every long run of base64 in it (a key pasted as words).
    for (const piece of normalized.split(/\s+/)) if (piece.length >= 16 && !piece.startsWith('-----')) secrets.push(piece);
    for (const line of normalized.split('\n')) if (line.length >= 16 && !line.startsWith('-----')) secrets.push(line.trim());
  }
  return secrets;
}

/**
 * A login command given unquoted spills into argv ("--docker_login_cmd docker login -u u -p pw"):
 * its -p values are words of argv. buildbot.sh has no -p flag of its own.
 */
function spilledPasswords(argv: readonly string[]): string[] {
  const secrets: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const inline = /^(?:-p=?|--password=)([\s\S]+)$/.exec(argv[i])?.[1];
    if (inline) secrets.push(inline);
    else if ((argv[i] === '-p' || argv[i] === '--password') && i + 1 < argv.length) secrets.push(argv[i + 1]);
  }
  return secrets.flatMap((s) => [s, encodeURIComponent(s)]);
}

/**
 * The credentials of a URL-like word, "scheme://user:password@host/…": the password always; the
 * user when it stands alone in an http(s) URL (a token). Read without a URL parser, which refuses
 * exactly the malformed URLs (a "/" in the password) whose errors would echo them.
 */
export function urlCredentialSecrets(word: string): string[] {
  const scheme = schemeIn(word);
  if (!scheme) return [];
  const rest = word.slice(scheme.end);
  const secrets: string[] = [];
  // Where the user information ends is ambiguous when it holds "@" or "/": every reading counts.
  for (const at of new Set([rest.indexOf('@'), rest.lastIndexOf('@')])) {
    if (at <= 0) continue;
    const userinfo = rest.slice(0, at);
    const colon = userinfo.indexOf(':');
    const parts = colon >= 0 ? [userinfo.slice(colon + 1)] : /^https?$/i.test(scheme.name) ? [userinfo] : [];
    if (colon >= 0 && parts[0]) secrets.push(userinfo);
    for (const part of parts) {
      if (!part) continue;
      secrets.push(part);
      try {
        secrets.push(decodeURIComponent(part));
      } catch {
        // not percent-encoded text; the raw form is on the list
      }
    }
    if (colon >= 0 && parts[0]) {
      const user = safeDecode(userinfo.slice(0, colon));
      secrets.push(Buffer.from(`${user}:${safeDecode(parts[0])}`).toString('base64'));
    }
  }
  return secrets;
}

/**
 * The first "scheme://" anywhere in a word ("--repo=https://…" is one word), as the unanchored
 * /([A-Za-z][A-Za-z0-9+.-]*):\/\// finds it, in linear time: that regex retries from every
 * position, so a long run of scheme characters cost quadratic time (250 KB: 84 s).
 */
function schemeIn(word: string): { name: string; end: number } | undefined {
  for (let colon = word.indexOf('://'); colon >= 0; colon = word.indexOf('://', colon + 3)) {
    // The run of scheme characters before "://" (runs before different "://"s do not overlap).
    let start = colon;
    while (start > 0 && isSchemeChar(word.charCodeAt(start - 1))) start--;
    while (start < colon && !isLetter(word.charCodeAt(start))) start++;
    if (start < colon) return { name: word.slice(start, colon), end: colon + 3 };
  }
  return undefined;
}

const isLetter = (c: number) => (c >= 65 && c <= 90) || (c >= 97 && c <= 122);
/** A-Z a-z 0-9 + . - */
const isSchemeChar = (c: number) => isLetter(c) || (c >= 48 && c <= 57) || c === 43 || c === 46 || c === 45;

function safeDecode(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** A URL-like word with its user information (anything between "://" and the last "@" before the path) hidden. */
export function withoutCredentials(word: string): string {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(word);
  if (!scheme) return word;
  const rest = word.slice(scheme[0].length);
  const at = rest.lastIndexOf('@');
  return at < 0 ? word : `${scheme[0]}***@${rest.slice(at + 1)}`;
}
