import type pg from 'pg';
import { FINAL_STATUSES, type BuildSummary } from '../../model/build.js';

/**
 * Build summaries in the builds table: the summary whole as JSON (what the API answers), with the
 * columns queries pick by kept in step with it. The files store's History does the same with one
 * JSON file per build (src/store/files/history.ts).
 */

/**
 * Stores a summary as it is now. The first save makes the row (its submit_order is the order of
 * the service's line across replicas); later saves update it. Which replica owns the build is set
 * by the first save only: reaping and leases go by it.
 */
export async function saveBuild(pool: pg.Pool | pg.PoolClient, summary: BuildSummary, replica: string): Promise<void> {
  await pool.query(
    `INSERT INTO builds (id, service_id, status, created_at, finished_at, replica, engine, summary)
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
     ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, finished_at = EXCLUDED.finished_at,
       engine = EXCLUDED.engine, summary = EXCLUDED.summary
     WHERE builds.status NOT IN ('succeeded', 'failed', 'cancelled', 'abandoned')`,
    [summary.id, summary.service_id, summary.status, summary.created_at, summary.finished_at ?? null, replica, summary.engine ?? null, summary],
  );
}

/** A build's summary, or undefined. */
export async function getBuild(pool: pg.Pool, id: string): Promise<BuildSummary | undefined> {
  const { rows } = await pool.query<{ summary: BuildSummary }>('SELECT summary FROM builds WHERE id = $1', [id]);
  return rows[0]?.summary;
}

/** Running first, then queued, then the rest newest first: the order of GET /api/v1/builds. */
export async function listBuilds(pool: pg.Pool, filter: { serviceId?: string; status?: string; limit: number }): Promise<BuildSummary[]> {
  const { rows } = await pool.query<{ summary: BuildSummary }>(
    `SELECT summary FROM builds
      WHERE ($1::text IS NULL OR service_id = $1) AND ($2::text IS NULL OR status = $2)
      ORDER BY CASE status WHEN 'running' THEN 0 WHEN 'queued' THEN 1 ELSE 2 END, created_at DESC
      LIMIT $3`,
    [filter.serviceId ?? null, filter.status ?? null, filter.limit],
  );
  return rows.map((r) => r.summary);
}

/** Keeps the newest `keep` finished builds of a service; their records go with them (ON DELETE CASCADE). */
export async function pruneService(pool: pg.Pool, serviceId: string, keep: number): Promise<number> {
  const { rowCount } = await pool.query(
    `DELETE FROM builds WHERE id IN (
       SELECT id FROM builds WHERE service_id = $1 AND status = ANY($2::text[])
        ORDER BY created_at DESC OFFSET $3)`,
    [serviceId, FINAL_STATUSES, keep],
  );
  return rowCount ?? 0;
}
