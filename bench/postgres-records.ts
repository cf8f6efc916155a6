/**
 * The PostgreSQL record writer under a chatty build (issue 20): one build offers 2,000 output lines
 * every 10 ms (up to 200,000 lines/s) until BENCH_RECORDS (100,000) are out, then the writer drains.
 * Prints the records stored, the statements sent (one INSERT + NOTIFY each) and the records per second
 * that reached the database. Needs the test environment's PostgreSQL:
 * BUILDBOT_TEST_DIR=… node dist/bench/postgres-records.js (or inside `npm run bench`'s environment).
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { newBuildId } from '../src/model/build-id.js';
import { createPool } from '../src/store/postgres/pool.js';
import { RecordWriter } from '../src/store/postgres/records.js';
import { migrate } from '../src/store/postgres/schema.js';
import { parseDatabaseUrl } from '../src/store/postgres/url.js';

export interface RecordsRow {
  records: number;
  statements: number;
  ms: number;
  perSecond: number;
}

export async function benchPostgresRecords(total = Number(process.env.BENCH_RECORDS ?? 100_000)): Promise<RecordsRow> {
  const env = JSON.parse(readFileSync(path.join(process.env.BUILDBOT_TEST_DIR ?? '', 'env.json'), 'utf8')) as { postgresUrl: string; postgresPassword: string };
  const settings = (database?: string) =>
    parseDatabaseUrl(database ? env.postgresUrl.replace(/\/[^/]+$/, `/${database}`) : env.postgresUrl, 'bench', { PGPASSWORD: env.postgresPassword });
  const admin = createPool(settings(), { max: 1 });
  const name = `bench_${randomBytes(4).toString('hex')}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const s = settings(name);
  const pool = createPool(s);
  try {
    await migrate(pool, s.shown);
    const id = newBuildId();
    await pool.query(`INSERT INTO builds (id, service_id, status, created_at, replica, summary) VALUES ($1, 'svc', 'running', now(), 'bench', '{}')`, [id]);
    const writer = new RecordWriter(pool, { flushMs: 150 });
    const data = `Step 3/9 : RUN npm ci --omit=dev ${'x'.repeat(40)}\n`;
    const started = performance.now();
    let seq = 0;
    while (seq < total) {
      for (let i = 0; i < 2000 && seq < total; i++) writer.append(id, { seq: ++seq, time: new Date().toISOString(), type: 'output', stream: 'stdout', data });
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
    if (!(await writer.drain(120_000))) throw new Error('the writer did not drain within 120 s');
    const ms = performance.now() - started;
    const { rows } = await pool.query<{ n: number }>('SELECT count(*)::int AS n FROM records');
    return { records: rows[0].n, statements: writer.stats.statements, ms: Math.round(ms), perSecond: Math.round((rows[0].n / ms) * 1000) };
  } finally {
    await pool.end();
    await admin.query(`DROP DATABASE ${name}`).catch(() => {});
    await admin.end();
  }
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  for (let run = 0; run < Number(process.env.BENCH_RUNS ?? 3); run++) console.log(JSON.stringify(await benchPostgresRecords()));
}
