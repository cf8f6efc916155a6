import type pg from 'pg';

/**
 * A value the whole fleet shares, made by whichever replica needs it first (the monitor's session
 * signing key: a sign-in on one replica must hold on every other). Replicas asking at once each
 * offer a value; the first insert wins and every one of them gets the winner's.
 */
export async function sharedSetting(pool: pg.Pool, name: string, make: () => Buffer): Promise<Buffer> {
  await pool.query('INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, make()]);
  // A statement of its own: its snapshot sees a row another replica committed during the insert above.
  const { rows } = await pool.query<{ value: Buffer }>('SELECT value FROM settings WHERE name = $1', [name]);
  if (!rows.length) throw new Error(`the shared setting ${name} vanished right after it was written`);
  return rows[0].value;
}
