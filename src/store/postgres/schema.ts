import type pg from 'pg';
import { BuildError } from '../../model/errors.js';

/**
 * The PostgreSQL store's tables, created and migrated when a replica starts.
 *
 * The whole migration is one transaction that first takes a transaction-scoped advisory lock:
 * replicas starting at once queue on the lock, the first migrates, the others find the version
 * already there. Not a session lock: a session lock outlives a failed transaction on a pooled
 * connection and vanishes silently when its connection drops (Concourse #6008, good_job #989);
 * the transaction's lock goes with its commit or rollback, whatever happens to the client.
 *
 * Migrations only ever append: MIGRATIONS[n - 1] takes a database from version n - 1 to n. A
 * database whose version is above the last one here was migrated by a newer buildbot, whose
 * tables this code may misread: it refuses to start rather than write into them.
 */
export const MIGRATIONS: readonly string[] = [
  // 1: everything issue 20 needs.
  `
  -- One row per build: the summary as the API shows it, with the columns that queries pick by.
  -- submit_order keeps the order in which builds of a service were asked for across replicas.
  CREATE TABLE builds (
    id text PRIMARY KEY,
    service_id text NOT NULL,
    status text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled', 'abandoned')),
    created_at timestamptz NOT NULL,
    finished_at timestamptz,
    submit_order bigint GENERATED ALWAYS AS IDENTITY,
    -- The replica that owns it (queued it, runs it); its lease decides when the build is abandoned.
    replica text NOT NULL,
    -- The engine it was placed on, once placed: slots are counted per engine across replicas.
    engine text,
    -- Whether it holds its service: at most one build per service does, fleet-wide (the index below).
    -- A column of its own rather than status = 'running': a build may hold its service while it
    -- waits for an engine slot.
    holds_service boolean NOT NULL DEFAULT false,
    -- A cancel asked for on any replica: the owner sees it by NOTIFY, or at its next heartbeat.
    cancel_requested_at timestamptz,
    summary jsonb NOT NULL
  );
  CREATE UNIQUE INDEX builds_one_per_service ON builds (service_id) WHERE holds_service;
  CREATE INDEX builds_by_service ON builds (service_id, created_at DESC);
  CREATE INDEX builds_by_created ON builds (created_at DESC);
  CREATE INDEX builds_waiting ON builds (service_id, submit_order) WHERE status = 'queued';
  CREATE INDEX builds_active_by_replica ON builds (replica) WHERE status IN ('queued', 'running');
  CREATE INDEX builds_running_by_engine ON builds (engine) WHERE status = 'running';

  -- The records of a build, one row each, in seq order; payload is the record's JSON line as the
  -- API sends it (bytes: written to a socket as they are). Within the log cap, like the files store.
  CREATE TABLE records (
    build_id text NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    seq bigint NOT NULL,
    type text NOT NULL,
    payload bytea NOT NULL,
    PRIMARY KEY (build_id, seq)
  );

  -- Every replica: heartbeat_at renewed every few seconds; past lease_until its builds are abandoned.
  CREATE TABLE replicas (
    id text PRIMARY KEY,
    host text NOT NULL,
    pid integer NOT NULL,
    started_at timestamptz NOT NULL DEFAULT now(),
    heartbeat_at timestamptz NOT NULL DEFAULT now(),
    lease_until timestamptz NOT NULL,
    state text NOT NULL DEFAULT 'serving' CHECK (state IN ('serving', 'draining', 'gone'))
  );

  -- Engine drain state, shared: an engine drained on one replica takes no build on any.
  CREATE TABLE engines (
    name text PRIMARY KEY,
    draining boolean NOT NULL DEFAULT false,
    changed_at timestamptz NOT NULL DEFAULT now(),
    changed_by text
  );

  -- Values shared by the fleet, made once by the first replica that needs them (the monitor's
  -- session signing key: a sign-in on one replica holds on every other).
  CREATE TABLE settings (
    name text PRIMARY KEY,
    value bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
  );
  `,
];

export const SCHEMA_VERSION = MIGRATIONS.length;

/** The advisory lock key of migrations: any constant; 'bbschema' as ASCII bytes, to be recognisable in pg_locks. */
export const MIGRATION_LOCK = 0x6262736368656d61n;

/** How long a replica waits for another one's migration before it gives up. */
const MIGRATION_TIMEOUT = '120s';

export interface MigrationResult {
  from: number;
  to: number;
}

/**
 * Brings the database to SCHEMA_VERSION, or refuses one that is newer. Safe to run from any number
 * of replicas at once. `shown` names the database in messages (redacted URL).
 * `hold` (tests only): awaited inside the transaction once the lock is held, before the commit.
 */
export async function migrate(pool: pg.Pool, shown: string, hold?: () => Promise<void>): Promise<MigrationResult> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    // The wait for another replica's migration may be long: bounded here, not by the pool's 15 s.
    await client.query(`SET LOCAL statement_timeout = '${MIGRATION_TIMEOUT}'`);
    await client.query('SELECT pg_advisory_xact_lock($1)', [MIGRATION_LOCK.toString()]);
    await client.query(`CREATE TABLE IF NOT EXISTS buildbot_schema (
      only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
      version integer NOT NULL,
      migrated_at timestamptz NOT NULL DEFAULT now()
    )`);
    const { rows } = await client.query<{ version: number }>('SELECT version FROM buildbot_schema');
    const from = rows[0]?.version ?? 0;
    if (from > SCHEMA_VERSION) {
      throw new BuildError(
        'ESCHEMANEWER',
        `the database ${shown} has schema version ${from}, newer than this buildbot's (${SCHEMA_VERSION}): a newer buildbot migrated it; run that version (or a newer one) on every replica, or give this one a database of its own`,
      );
    }
    for (let version = from + 1; version <= SCHEMA_VERSION; version++) await client.query(MIGRATIONS[version - 1]);
    if (from < SCHEMA_VERSION) {
      await client.query(
        `INSERT INTO buildbot_schema (version) VALUES ($1)
         ON CONFLICT (only_row) DO UPDATE SET version = EXCLUDED.version, migrated_at = now()`,
        [SCHEMA_VERSION],
      );
    }
    await hold?.();
    await client.query('COMMIT');
    return { from, to: Math.max(from, SCHEMA_VERSION) };
  } catch (err) {
    // A failed ROLLBACK means a broken connection: it is thrown away, not handed back to the pool.
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}
