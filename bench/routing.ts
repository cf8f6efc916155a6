/**
 * The cost of the routing decision per build (issue 19): rank the engines by weighted rendezvous
 * hashing of the service id, then take and give back a slot on free engines (EngineSlots), over
 * 100,000 decisions; also the hash and the rank alone. No Docker. Run: node dist/bench/routing.js
 * (BENCH_DECISIONS, BENCH_RUNS); bench/bench.ts can call benchRouting().
 */
import { pathToFileURL } from 'node:url';
import { EngineSlots, rank, unitHash } from '../src/engines/routing.js';

export interface RoutingRow {
  what: string;
  engines: number;
  /** Median over the runs, in microseconds per operation. */
  microseconds: number;
  min: number;
  max: number;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];

async function measure(what: string, engines: number, decisions: number, runs: number, once: (i: number) => unknown): Promise<RoutingRow> {
  // A warm-up run first, so the JIT has compiled what is measured.
  for (let i = 0; i < Math.min(decisions, 20_000); i++) await once(i);
  const perOp: number[] = [];
  for (let run = 0; run < runs; run++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < decisions; i++) await once(i);
    perOp.push(Number(process.hrtime.bigint() - start) / 1000 / decisions);
  }
  return { what, engines, microseconds: median(perOp), min: Math.min(...perOp), max: Math.max(...perOp) };
}

export async function benchRouting(decisions = 100_000, runs = 5): Promise<RoutingRow[]> {
  const rows: RoutingRow[] = [];
  const services = Array.from({ length: 1000 }, (_, i) => `github.com/org/service-${i}`);
  rows.push(await measure('sha256 unit hash', 1, decisions, runs, (i) => unitHash('engine-1', services[i % 1000])));
  for (const n of [1, 3, 8]) {
    const engines = Array.from({ length: n }, (_, i) => ({ name: `engine-${i + 1}`, weight: 1 + (i % 3), slots: decisions }));
    rows.push(await measure('rank', n, decisions, runs, (i) => rank(services[i % 1000], engines)));
    const slots = new EngineSlots(engines, { maxBuilds: decisions, affinityWaitMs: 30_000 });
    const signal = new AbortController().signal;
    rows.push(await measure('decision (rank + acquire + release, free engines)', n, decisions, runs, async (i) => {
      const grant = await slots.acquire(services[i % 1000], signal, () => {});
      grant.release();
    }));
  }
  return rows;
}

if (import.meta.url === pathToFileURL(process.argv[1] ?? '').href) {
  const rows = await benchRouting(Number(process.env.BENCH_DECISIONS ?? 100_000), Number(process.env.BENCH_RUNS ?? 5));
  console.log('| what | engines | µs per operation, median (min–max) |');
  console.log('|---|---|---|');
  for (const r of rows) console.log(`| ${r.what} | ${r.engines} | ${r.microseconds.toFixed(2)} (${r.min.toFixed(2)}–${r.max.toFixed(2)}) |`);
}
