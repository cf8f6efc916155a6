import type pg from 'pg';
import { CANCELS_CHANNEL, RECORDS_CHANNEL } from './channels.js';

/**
 * Replicas and their leases. Each replica renews its lease with a heartbeat every few seconds; one
 * whose lease ran out is gone for the fleet: any other replica reaps it, marking its queued and
 * running builds abandoned (with an exit record, code null), which frees their services. An
 * expired lease is never renewed, even when nobody has reaped it yet: a replica that stalled past
 * its lease learns at its next heartbeat that its builds are no longer its own, and must stop them
 * before pushing anything.
 */

export interface ReplicaIdentity {
  id: string;
  host: string;
  pid: number;
}

/** Starts (or restarts, under the same id) a replica's lease. */
export async function registerReplica(pool: pg.Pool, replica: ReplicaIdentity, leaseMs: number): Promise<void> {
  await pool.query(
    `INSERT INTO replicas (id, host, pid, lease_until) VALUES ($1, $2, $3, now() + make_interval(secs => $4::float8 / 1000))
     ON CONFLICT (id) DO UPDATE SET host = EXCLUDED.host, pid = EXCLUDED.pid, started_at = now(), heartbeat_at = now(),
       lease_until = EXCLUDED.lease_until, state = 'serving'`,
    [replica.id, replica.host, replica.pid, leaseMs],
  );
}

export interface Heartbeat {
  /** false: the lease ran out (or the replica was reaped): its builds are no longer its own. */
  alive: boolean;
  /** Its builds that a cancel was asked for (on any replica), still queued or running. */
  cancels: string[];
}

/** Renews the lease if it has not run out, and reads the cancel marks of the replica's builds; one round trip. */
export async function heartbeat(pool: pg.Pool, replicaId: string, leaseMs: number): Promise<Heartbeat> {
  const { rows } = await pool.query<{ renewed: boolean; cancels: string[] }>(
    `WITH renewed AS (
       UPDATE replicas SET heartbeat_at = now(), lease_until = now() + make_interval(secs => $2::float8 / 1000)
        WHERE id = $1 AND state <> 'gone' AND lease_until > now() RETURNING id)
     SELECT EXISTS (SELECT 1 FROM renewed) AS renewed,
            ARRAY(SELECT id FROM builds WHERE replica = $1 AND cancel_requested_at IS NOT NULL AND status IN ('queued', 'running') ORDER BY submit_order) AS cancels`,
    [replicaId, leaseMs],
  );
  return { alive: rows[0].renewed, cancels: rows[0].cancels };
}

/** Marks a build for cancelling and tells its owner at once (NOTIFY); the owner's heartbeat sees the mark too. */
export async function requestCancel(pool: pg.Pool, buildId: string): Promise<boolean> {
  const { rows } = await pool.query<{ id: string }>(
    `WITH marked AS (
       UPDATE builds SET cancel_requested_at = coalesce(cancel_requested_at, now())
        WHERE id = $1 AND status IN ('queued', 'running') RETURNING id)
     SELECT id, pg_notify('${CANCELS_CHANNEL}', id) FROM marked`,
    [buildId],
  );
  return rows.length === 1;
}

export interface Abandoned {
  id: string;
  replica: string;
  serviceId: string;
  /** Where its containers are to be removed, if it was placed. */
  engine: string | null;
}

/**
 * Reaps every replica whose lease ran out: its queued and running builds become abandoned, give
 * back their services, and get an exit record (code null: no exit code exists) after their last
 * stored record, announced to their followers. One transaction; replicas reaping at once skip the
 * rows another one holds (FOR UPDATE SKIP LOCKED), so each build is abandoned once.
 */
export async function reapExpired(pool: pg.Pool, reaper: string): Promise<Abandoned[]> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const { rows: gone } = await client.query<{ id: string }>(
      `UPDATE replicas SET state = 'gone' WHERE id IN (
         SELECT id FROM replicas WHERE state <> 'gone' AND lease_until < now() AND id <> $1 FOR UPDATE SKIP LOCKED)
       RETURNING id`,
      [reaper],
    );
    if (!gone.length) {
      await client.query('COMMIT');
      return [];
    }
    const { rows } = await client.query<{ id: string; replica: string; service_id: string; engine: string | null }>(
      `UPDATE builds SET status = 'abandoned', holds_service = false, finished_at = now(),
              summary = summary || jsonb_build_object('status', 'abandoned', 'exit_code', null, 'finished_at', to_jsonb(now()))
        WHERE replica = ANY($1) AND status IN ('queued', 'running')
        RETURNING id, replica, service_id, engine`,
      [gone.map((r) => r.id)],
    );
    if (rows.length) {
      // The exit record in the shape every other one has (seq, time, type first: readers rely on it).
      await client.query(
        `WITH last AS (
           SELECT b.id, coalesce((SELECT max(seq) FROM records r WHERE r.build_id = b.id), 0) + 1 AS seq
             FROM unnest($1::text[]) AS b(id)),
         written AS (
           INSERT INTO records (build_id, seq, type, payload)
           SELECT id, seq, 'exit', convert_to(format('{"seq":%s,"time":"%s","type":"exit","code":null,"status":"abandoned"}',
                    seq, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')), 'UTF8')
             FROM last
           ON CONFLICT (build_id, seq) DO NOTHING
           RETURNING build_id, seq)
         SELECT pg_notify('${RECORDS_CHANNEL}', build_id || ':' || seq) FROM written`,
        [rows.map((r) => r.id)],
      );
    }
    await client.query('COMMIT');
    return rows.map((r) => ({ id: r.id, replica: r.replica, serviceId: r.service_id, engine: r.engine }));
  } catch (err) {
    await client.query('ROLLBACK').catch(() => (broken = true));
    throw err;
  } finally {
    client.release(broken);
  }
}
