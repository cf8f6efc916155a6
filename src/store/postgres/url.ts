import { readFileSync } from 'node:fs';
import type { ClientConfig, PoolConfig } from 'pg';
import { BuildError, EXIT_USAGE } from '../../model/errors.js';

/**
 * Where the PostgreSQL store is: `--database-url URL` or else BUILDBOT_DATABASE_URL, as
 * postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=…]. The password comes from the URL,
 * or else PGPASSWORD; `@PATH` in place of the URL reads the URL (password included) from a file,
 * for a secret mounted by Docker or Kubernetes. Nothing set: undefined (the file store).
 *
 * The password lives only in `config`: every message and log line uses `shown`, the URL with
 * ***** in its place, and errors of the driver go through `redact` first.
 */
export interface DatabaseSettings {
  /** The URL for messages and logs: the password (if any) replaced by *****. */
  shown: string;
  host: string;
  port: number;
  database: string;
  user: string;
  /** For node-postgres; holds the password: never log it. */
  config: ClientConfig;
  /** Replaces the password (as given and percent-encoded) in any text, e.g. a driver's error. */
  redact(text: string): string;
}

export const DATABASE_FLAG = '--database-url';
export const DATABASE_VARIABLE = 'BUILDBOT_DATABASE_URL';
const HIDDEN = '*****';

/**
 * Bounds on every wait, so that a database that stops answering fails a call instead of hanging it:
 * connecting, a statement on the server, an answer on the client (a dead TCP connection gives no
 * error), a transaction left open by a holder that stalled (its row locks would hold others back).
 */
export const TIMEOUTS = {
  connectMs: 5_000,
  statementMs: 15_000,
  /** Client side: a little past the server's own limit, so the server's error wins when it answers. */
  queryMs: 20_000,
  idleInTransactionMs: 30_000,
  keepAliveMs: 10_000,
};

const usage = (message: string) => new BuildError('EUSAGE', message, EXIT_USAGE, { field: 'database_url' });
const SSL_MODES = ['disable', 'require', 'verify-full'] as const;

/**
 * The database settings from the flag (first) or the variable; undefined when neither is set.
 * Throws a usage error (exit 2) naming the flag or variable, never quoting the password.
 */
export function databaseSettings(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): DatabaseSettings | undefined {
  const given = flag ?? (env[DATABASE_VARIABLE] || undefined);
  if (given === undefined) return undefined;
  const source = flag !== undefined ? DATABASE_FLAG : DATABASE_VARIABLE;
  let text = given.trim();
  if (text.startsWith('@')) {
    const file = text.slice(1);
    try {
      text = readFileSync(file, 'utf8').trim();
    } catch (err) {
      throw usage(`${source}: cannot read the file ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'}); it should hold the database URL, postgres://USER:PASSWORD@HOST:PORT/DATABASE`);
    }
  }
  return parseDatabaseUrl(text, source, env);
}

/** Parses one URL (see databaseSettings); `source` names where it came from in messages. */
export function parseDatabaseUrl(text: string, source: string, env: NodeJS.ProcessEnv = {}): DatabaseSettings {
  const example = 'postgres://USER@HOST:5432/DATABASE (the password in the URL, in PGPASSWORD, or the whole URL in a file given as @PATH)';
  // Until the URL is read, where its password stops is unknown: the messages quote nothing of it.
  const unread = (problem: string) => usage(`${source} ${problem}; give ${example}`);
  if (!/^postgres(ql)?:\/\//i.test(text)) throw unread('is not a postgres:// URL');
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    // WHATWG's error carries the input (password included) in a property: never passed on.
    throw unread('cannot be read as a URL (a "/", "?", "#" or "@" in the user name or password must be percent-encoded, e.g. %2F for "/")');
  }
  // Rebuilt from the parts that are no secret; the query only with the options buildbot reads.
  const known = [...url.searchParams].filter(([name]) => name === 'sslmode' || name === 'application_name');
  const shown = `${url.protocol}//${url.username}${url.password ? `:${HIDDEN}` : ''}${url.username || url.password ? '@' : ''}${url.host}${url.pathname}${known.length ? `?${new URLSearchParams(known)}` : ''}`;
  const bad = (problem: string) => usage(`${source} "${shown.slice(0, 300)}" ${problem}; give ${example}`);
  const decode = (part: string, what: string) => {
    try {
      return decodeURIComponent(part);
    } catch {
      throw bad(`has a broken percent-encoding in its ${what}`);
    }
  };
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw bad('names no host');
  const port = url.port ? Number(url.port) : 5432;
  const database = decode(url.pathname.replace(/^\//, ''), 'database name');
  if (!database || database.includes('/')) throw bad('names no database (the path after the host, e.g. /buildbot)');
  const user = decode(url.username, 'user name') || env.PGUSER || '';
  if (!user) throw bad('names no user (before the @, e.g. postgres://buildbot@db:5432/buildbot)');
  const password = url.password ? decode(url.password, 'password') : env.PGPASSWORD || undefined;

  let ssl: ClientConfig['ssl'] = false;
  for (const [name, value] of url.searchParams) {
    if (name === 'sslmode') {
      if (!(SSL_MODES as readonly string[]).includes(value)) throw bad(`has sslmode=${value.slice(0, 40)}, which buildbot does not know; use one of ${SSL_MODES.join(', ')}`);
      // require: encrypted, any certificate (libpq's meaning); verify-full: the system's CAs and the host name.
      ssl = value === 'disable' ? false : value === 'require' ? { rejectUnauthorized: false } : { rejectUnauthorized: true };
    } else if (name === 'application_name') {
      // kept below
    } else {
      // A misspelt option would silently do nothing.
      throw bad(`has the option "${name.slice(0, 40)}", which buildbot does not know (it reads sslmode and application_name)`);
    }
  }
  const secrets = password ? [...new Set([password, encodeURIComponent(password), url.password].filter((s) => s.length > 0))] : [];
  const redact = (value: string) => secrets.reduce((out, secret) => out.split(secret).join(HIDDEN), value);
  return {
    shown,
    host,
    port,
    database,
    user,
    redact,
    config: {
      host,
      port,
      database,
      user,
      password,
      ssl,
      application_name: url.searchParams.get('application_name') ?? 'buildbot',
      connectionTimeoutMillis: TIMEOUTS.connectMs,
      statement_timeout: TIMEOUTS.statementMs,
      query_timeout: TIMEOUTS.queryMs,
      idle_in_transaction_session_timeout: TIMEOUTS.idleInTransactionMs,
      keepAlive: true,
      keepAliveInitialDelayMillis: TIMEOUTS.keepAliveMs,
    },
  };
}

/** Pool settings over the connection's: a few connections, idle ones closed after a while. */
export function poolConfig(settings: DatabaseSettings, max = 4): PoolConfig {
  return { ...settings.config, max, idleTimeoutMillis: 30_000 };
}

/**
 * A database URL for messages and logs: the password (everything between the user's ":" and the
 * last "@") replaced by *****. The last "@" of all: a password may hold "@" and "/" unencoded
 * (which the URL parser refuses, but the message about that must still hide it); hiding part of
 * an odd database name as well is the lesser harm. Works on text that is no valid URL too.
 */
export function redactDatabaseUrl(url: string): string {
  const scheme = url.indexOf('://');
  const from = scheme < 0 ? 0 : scheme + 3;
  const at = url.lastIndexOf('@');
  if (at < from) return url;
  const colon = url.indexOf(':', from);
  if (colon < 0 || colon > at) return url;
  return `${url.slice(0, colon + 1)}${HIDDEN}${url.slice(at)}`;
}
