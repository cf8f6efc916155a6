import ssh2 from 'ssh2';
import { errors } from '../model/errors.js';
import { withoutCredentials } from './raw-secrets.js';
import type { Vcs } from './types.js';

const SERVICE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Whether id can name a service (so, a clone cache): never "." or "..", never a name starting with ".". */
export const isServiceId = (id: string) => SERVICE_ID.test(id);

export function validateServiceId(id: string): string {
  if (!isServiceId(id)) {
    throw errors.invalidInput(
      `--service_id "${id}" is not valid: use 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
  return id;
}

const SCP_LIKE = /^(?:[A-Za-z0-9._-]+@)?([A-Za-z0-9][A-Za-z0-9.-]*):(?!\/\/)(.+)$/;

export interface RepoUrl {
  url: string;
  vcs: Vcs;
  displayUrl: string;
  /** Credentials embedded in an https URL; they are secrets. */
  embeddedSecrets: string[];
  /** base64 of "user:password" from an https URL, sent as an HTTP header instead of on git's command line. */
  basicAuth?: string;
}

export function validateRepoUrl(raw: string, vcsFlag: string | undefined): RepoUrl {
  const url = raw.trim();
  // Every message shows the URL without its credentials (the redactor would catch them too).
  const shown = withoutCredentials(url);
  const allowed = 'use ssh://[user@]host[:port]/path, user@host:path or https://host/path';
  if (!url) throw errors.invalidInput(`--repo is empty; ${allowed}`);
  if (url.startsWith('-')) throw errors.invalidInput(`--repo "${shown}" starts with "-"; ${allowed}`);
  if (/[\s\x00-\x1f\x7f]/.test(url)) throw errors.invalidInput(`--repo holds white space or control characters; ${allowed}`);
  if (vcsFlag !== undefined && vcsFlag !== 'git' && vcsFlag !== 'hg') {
    throw errors.invalidInput(`--vcs "${vcsFlag}" is not known; use git or hg`);
  }

  let parsed: URL | undefined;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(url)) {
    try {
      parsed = new URL(url);
    } catch {
      const hint = shown !== url ? ' (a "/", "?", "#" or "@" in the user name or password must be percent-encoded, e.g. %2F for "/")' : '';
      throw errors.invalidInput(`--repo "${shown}" is not a valid URL${hint}; ${allowed}`);
    }
    if (parsed.protocol !== 'ssh:' && parsed.protocol !== 'https:') {
      throw errors.invalidInput(`--repo "${parsed.protocol}//…" is refused: only remote repositories are built; ${allowed}`);
    }
    if (!parsed.hostname) throw errors.invalidInput(`--repo "${shown}" names no host; ${allowed}`);
  } else if (!SCP_LIKE.test(url) || url.includes('::')) {
    throw errors.invalidInput(`--repo "${shown}" is refused: local paths and transports like ext:: are not built; ${allowed}`);
  }

  const vcs: Vcs = (vcsFlag as Vcs | undefined) ?? (parsed?.protocol === 'ssh:' && parsed.username === 'hg' ? 'hg' : 'git');
  const embeddedSecrets: string[] = [];
  let cleanUrl = url;
  let displayUrl = url;
  let basicAuth: string | undefined;
  if (parsed?.protocol === 'https:' && (parsed.username || parsed.password)) {
    if (vcs === 'hg') {
      throw errors.invalidInput('--repo: credentials in an https URL are not supported for Mercurial (they would be on hg\'s command line); use an ssh:// URL and --repo_auth_key');
    }
    // A token may be given as the user name alone (https://TOKEN@host/…); beside a password,
    // the user name is no secret (and redacting a name like "build" would garble the output).
    for (const part of parsed.password ? [parsed.password] : [parsed.username]) {
      embeddedSecrets.push(part, decodeURIComponent(part));
    }
    basicAuth = Buffer.from(`${decodeURIComponent(parsed.username)}:${decodeURIComponent(parsed.password)}`).toString('base64');
    embeddedSecrets.push(basicAuth);
    const clean = new URL(url);
    clean.username = '';
    clean.password = '';
    displayUrl = clean.toString();
  } else if (parsed?.protocol === 'ssh:' && parsed.password) {
    // ssh never uses it (BatchMode, key authentication only): it is dropped, and kept out of
    // every message and image label.
    embeddedSecrets.push(parsed.password, decodeURIComponent(parsed.password));
    const clean = new URL(url);
    clean.password = '';
    cleanUrl = displayUrl = clean.toString();
  }
  return { url: cleanUrl, vcs, displayUrl, embeddedSecrets, basicAuth };
}

export function validateRevision(rev: string): string {
  if (!rev || rev.startsWith('-') || /[\s\x00-\x1f\x7f~^:?*[\\]/.test(rev) || rev.includes('..') || rev.length > 255) {
    throw errors.invalidInput(`--revision "${rev}" is not valid; give a commit SHA, a branch or a tag`);
  }
  return rev;
}

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

/** The form of --image (no tag, no digest); registry.ts splits and checks the name itself. */
export function validateImage(image: string): string {
  if (image.length > 255) throw errors.invalidInput(`--image is longer than 255 characters`);
  if (image.includes('@')) throw errors.invalidInput(`--image "${image}" holds a digest; give the repository only, e.g. registry.example.com/api`);
  const lastSlash = image.lastIndexOf('/');
  if (image.slice(lastSlash + 1).includes(':')) {
    throw errors.invalidInput(`--image "${image}" holds a tag; give the repository only and the tags with --tag`);
  }
  return image;
}

export function validateTags(raw: string[]): string[] {
  const tags = raw.flatMap((t) => t.split(',')).map((t) => t.trim()).filter(Boolean);
  if (tags.length === 0) throw errors.usage('missing --tag');
  for (const tag of tags) {
    if (!TAG.test(tag)) {
      throw errors.invalidInput(`--tag "${tag}" is not a valid tag: use up to 128 letters, digits, "_", "." or "-", not starting with "." or "-"`);
    }
  }
  return [...new Set(tags)];
}

/** Accepts base64 of the key file (as --repo_auth_key carries it) or the key text itself. */
export function decodePrivateKey(raw: string, source: string): { key: string; secrets: string[] } {
  const trimmed = raw.trim();
  let text = trimmed;
  if (!trimmed.includes('-----BEGIN')) {
    const compact = trimmed.replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(compact)) {
      throw errors.invalidInput(`${source} is not base64; give base64 of the private key file, e.g. $(base64 -w0 deploy_key)`);
    }
    text = Buffer.from(compact, 'base64').toString('utf8');
  }
  text = text.replace(/\r\n/g, '\n').trim() + '\n';
  if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
    throw errors.invalidInput(`${source} does not hold a private key; give base64 of the private key file (OpenSSH or PEM format), not the public key`);
  }
  const parsed = ssh2.utils.parseKey(text);
  if (parsed instanceof Error) {
    const detail = /passphrase|encrypt/i.test(parsed.message)
      ? 'it is protected by a passphrase; give a deploy key without one'
      : `it cannot be read (${parsed.message.replace(/\n.*/s, '')})`;
    throw errors.invalidInput(`${source}: ${detail}`);
  }
  const bodyLines = text.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));
  return { key: text, secrets: [raw, trimmed, text.trim(), ...bodyLines, Buffer.from(text).toString('base64')] };
}
