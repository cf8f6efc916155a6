import type pg from 'pg';

/**
 * At most one build per service in the whole fleet, held in rows: a build holds its service while
 * builds.holds_service is true, and the partial unique index builds_one_per_service (schema.ts)
 * refuses a second holder whatever the replicas do. Not a session advisory lock: such a lock
 * vanishes silently with its connection while its holder goes on (Concourse #6008, good_job #989);
 * a row stays until its holder, or the replica that finds the holder's lease lost, changes it.
 *
 * Builds of a service take it in the order they were submitted (builds.submit_order, across replicas).
 */

/**
 * Takes the service for a queued build when no build holds it and this one is the first waiting.
 * One statement; true when taken. Two replicas taking at once: the index makes the second wait for
 * the first's commit, then fail with unique_violation, which is a plain "not now".
 */
export async function takeService(pool: pg.Pool | pg.PoolClient, buildId: string): Promise<boolean> {
  try {
    const { rowCount } = await pool.query(
      `UPDATE builds b SET holds_service = true
        WHERE b.id = $1 AND b.status = 'queued' AND NOT b.holds_service
          AND NOT EXISTS (SELECT 1 FROM builds h WHERE h.service_id = b.service_id AND h.holds_service)
          AND NOT EXISTS (SELECT 1 FROM builds w WHERE w.service_id = b.service_id AND w.status = 'queued'
                            AND NOT w.holds_service AND w.submit_order < b.submit_order)`,
      [buildId],
    );
    return rowCount === 1;
  } catch (err) {
    if ((err as { code?: string }).code === '23505') return false;
    throw err;
  }
}

/** Gives the service back (the build ended, or was abandoned); the next waiting build may take it. */
export async function releaseService(pool: pg.Pool | pg.PoolClient, buildId: string): Promise<void> {
  await pool.query('UPDATE builds SET holds_service = false WHERE id = $1 AND holds_service', [buildId]);
}
