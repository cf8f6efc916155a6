import type { IncomingMessage } from 'node:http';
import { BuildError, errors, fieldOf, isBuildError } from '../../model/errors.js';
import { createRedactor } from '../../io/redact.js';
import { checkRequestSize } from '../../request/limits.js';
import { isBuildFlag, LOCAL_ONLY, localOnlyMessage, parseBuildCommand } from '../../request/parse.js';
import { secretsInRawArguments } from '../../request/raw-secrets.js';
import type { BuildRequest } from '../../request/types.js';

/** A JSON build request is a few KB (a deploy key is the largest field). */
export const MAX_BODY_BYTES = 256 * 1024;

export class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string, readonly field?: string) {
    super(message);
  }
}

/** Reads a JSON body of at most MAX_BODY_BYTES: 415 when it is not JSON, 413 when larger, 400 when malformed. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') {
    req.resume();
    throw new HttpError(415, 'EMEDIATYPE', 'the body must be JSON: send Content-Type: application/json');
  }
  const declared = Number(req.headers['content-length']);
  if (declared > MAX_BODY_BYTES) throw tooLarge();
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw tooLarge();
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'EBADJSON', 'the body is not valid JSON');
  }
}

const tooLarge = () => new HttpError(413, 'ETOOLARGE', `the body is larger than ${MAX_BODY_BYTES / 1024} KB; a build request is a few KB`);

/** Fields whose values are secrets: never echoed in an error. */
const SECRET_FIELDS = ['repo_auth_key', 'docker_login_cmd', 'docker_login_cache', 'build_secret'];

/**
 * Turns a JSON body with the flags' names into a request through the same parser and
 * validation as the command line (`tags` is the array form of --tag), so both fronts accept
 * exactly the same builds. Errors name the JSON field, not the flag.
 */
export async function requestFromJson(body: unknown): Promise<BuildRequest> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) {
    throw new HttpError(400, 'EBADJSON', 'the body must be a JSON object with the build\'s fields, e.g. {"service_id":"api","repo":"…","revision":"main","image":"…","tags":["1.0"]}');
  }
  const argv: string[] = [];
  const secrets: string[] = [];
  for (const [key, value] of Object.entries(body as Record<string, unknown>)) {
    if ((LOCAL_ONLY as readonly string[]).includes(key)) throw new HttpError(400, 'EUSAGE', localOnlyMessage(key), key);
    if (!/^[a-z][a-z0-9_]{0,63}$/.test(key) || key === 'tag' || key === 'help') {
      const underscored = key.replace(/-/g, '_');
      const hint = key === 'tag' ? '; give the tags as an array in "tags"' : underscored !== key && isBuildFlag(underscored) ? ` (did you mean "${underscored}"?)` : '';
      throw new HttpError(400, 'EUSAGE', `unknown field${/^[\w-]{1,64}$/.test(key) ? ` "${key}"` : ''}${hint}`, key.slice(0, 64));
    }
    const flag = key === 'tags' ? 'tag' : key;
    const values = Array.isArray(value) ? value : [value];
    if (key === 'tags' && !Array.isArray(value)) throw new HttpError(400, 'EUSAGE', '"tags" must be an array of strings, e.g. ["1.0", "latest"]', key);
    for (const item of values) {
      if (item === null || item === false) continue;
      if (item === true) argv.push(`--${flag}`);
      else if (typeof item === 'string' || typeof item === 'number') {
        argv.push(`--${flag}=${item}`);
        // Each word too: a password in the wrong place is the word an error would quote.
        if (SECRET_FIELDS.includes(key)) secrets.push(String(item), ...String(item).split(/\s+/).filter((w) => w.length >= 6 && !/^(docker|login)$|^-/.test(w)));
        if (key === 'repo') secrets.push(...userInfo(String(item)));
      } else {
        throw new HttpError(400, 'EUSAGE', `"${key}" must be a string${key === 'tags' ? ' array' : ''}`, key);
      }
    }
  }
  try {
    checkRequestSize(argv);
  } catch (err) {
    if (isBuildError(err)) throw asHttpError(err);
    throw err;
  }
  // The same reading of the raw arguments as for SSH and the local command (src/request/raw-secrets.ts):
  // it also finds credentials that the URL parser refuses (a "/" in a password).
  const rawSecrets = secretsInRawArguments(argv);
  secrets.push(...rawSecrets);
  try {
    const parsed = await parseBuildCommand(argv, {});
    if (parsed.kind !== 'build') throw errors.usage('unexpected help request');
    parsed.request.secrets.push(...rawSecrets);
    return parsed.request;
  } catch (err) {
    if (!isBuildError(err)) throw err;
    throw asHttpError(err, createRedactor(secrets).redact);
  }
}

/** The credentials of a URL (user:password@), which an error quoting the URL must not show. */
function userInfo(url: string): string[] {
  const match = /^[a-z][a-z0-9+.-]*:\/\/([^/@]*)@/i.exec(url);
  if (!match) return [];
  return [match[1], ...match[1].split(':').filter((p) => p.length >= 4)];
}

/** A validation error in the API's terms: the JSON field names instead of the flags. */
export function asHttpError(err: BuildError, redact: (text: string) => string = (t) => t): HttpError {
  const jsonName = (flag: string) => (flag === 'tag' ? 'tags' : flag);
  const message = redact(err.message).replace(/--([a-z][a-z0-9_-]*)/g, (_, flag: string) => `"${jsonName(flag)}"`);
  const flagged = fieldOf(err);
  // A refusal that passes (the server is stopping) is the server's state, not the request's fault.
  const status = err.code === 'ESHUTTINGDOWN' ? 503 : 400;
  return new HttpError(status, err.code, message, flagged === undefined ? undefined : jsonName(flagged));
}
