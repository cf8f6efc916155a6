import pg from 'pg';
import type { ServerLog } from '../../log/server-log.js';
import { poolConfig, type DatabaseSettings } from './url.js';

/**
 * A pool of connections to the store's database. An idle pooled connection that the server drops
 * (a restart, pg_terminate_backend) raises 'error' on the pool, and an 'error' without a listener
 * ends the process: it is logged (redacted) and the pool opens a new connection on the next query.
 */
export function createPool(settings: DatabaseSettings, options: { max?: number; log?: ServerLog } = {}): pg.Pool {
  const pool = new pg.Pool(poolConfig(settings, options.max));
  pool.on('error', (err) => options.log?.('database-connection-lost', { database: settings.shown, error: describeError(err, settings) }));
  return pool;
}

/** A driver's error for a message or log line: its SQLSTATE when there is one, the password never. */
export function describeError(err: unknown, settings?: Pick<DatabaseSettings, 'redact'>): string {
  const e = err as { message?: string; code?: string };
  const text = `${e?.message ?? String(err)}${e?.code && /^[0-9A-Z]{5}$/.test(e.code) ? ` (SQLSTATE ${e.code})` : ''}`;
  return settings ? settings.redact(text) : text;
}

/** Whether an error says the database could not be reached or went away (worth a retry), not that a statement is wrong. */
export function isConnectionError(err: unknown): boolean {
  const code = (err as { code?: string })?.code ?? '';
  // 08: connection exceptions; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now; 53300: too many connections.
  if (/^08|^57P0[1-3]$|^53300$/.test(code)) return true;
  if (/^E[A-Z]+$/.test(code)) return true; // ECONNREFUSED, ECONNRESET, ETIMEDOUT … from the socket
  return /Connection terminated|timeout|Client has encountered a connection error|not queryable/i.test((err as Error)?.message ?? '');
}
