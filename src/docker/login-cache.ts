import { createHmac, randomBytes } from 'node:crypto';

/**
 * Registry logins checked lately: a login the registry accepted moments ago for the same
 * registry, user and password is not checked again within WINDOW_MS (saves a round trip to the
 * registry through the engine on every build). In memory only, keyed by a keyed hash whose key
 * lives only in this process: neither the password nor anything derived from it is stored.
 */
const WINDOW_MS = 60_000;
const MAX_ENTRIES = 1000;
const SALT = randomBytes(32);
const checked = new Map<string, number>();

export interface Credentials {
  registry: string;
  username: string;
  password: string;
  /** The engine that checked it (its name with --engine): each engine checks through its own network. */
  engine?: string;
}

// JSON: no two different triples encode alike (a separator could also occur inside a field).
const keyOf = (c: Credentials) => createHmac('sha256', SALT).update(JSON.stringify([c.registry, c.username, c.password, c.engine ?? ''])).digest('base64');

/** Whether the registry accepted these credentials within the window. */
export function loginCheckedLately(auth: Credentials, now = Date.now()): boolean {
  const at = checked.get(keyOf(auth));
  return at !== undefined && now - at < WINDOW_MS;
}

/** Records that the registry just accepted these credentials. */
export function rememberLogin(auth: Credentials, now = Date.now()): void {
  for (const [key, at] of checked) if (now - at >= WINDOW_MS) checked.delete(key);
  // Bounded whatever callers send: the oldest entries go first.
  while (checked.size >= MAX_ENTRIES) checked.delete(checked.keys().next().value!);
  checked.set(keyOf(auth), now);
}

/** Forgets a login the registry refused after all (a push told otherwise). */
export function forgetLogin(auth: Credentials): void {
  checked.delete(keyOf(auth));
}

export const LOGIN_CHECK_WINDOW_SECONDS = WINDOW_MS / 1000;
