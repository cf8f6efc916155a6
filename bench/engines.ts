/**
 * `BENCH_ROWS=engines npm run bench` (or `node dist/bench/engines.js` inside the test environment):
 * issue 19's rows. One server with two engines (the test environment's and a second dockerd of
 * its own, test/helpers/engine.ts); 20 services, three builds each in shuffled order, one at a
 * time: the share of second and third builds that landed on the engine of the service's first
 * build (where its layer cache is); a rebuild on the preferred engine against the same rebuild
 * forced onto the other (its preferred engine drained); the routing decision's own cost.
 * Two engines on two cores cannot double throughput, so placement and overhead are what is measured.
 */
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { quote } from 'shell-quote';
import { buildArgs } from '../test/helpers/build.js';
import { SecondEngine } from '../test/helpers/engine.js';
import { engineSocket } from '../test/helpers/env.js';
import { GitRepo, staticSite } from '../test/helpers/repos.js';
import { ssh, startServer, type ServerProcess } from '../test/helpers/server.js';
import { benchRouting } from './routing.js';

const SERVICES = Number(process.env.BENCH_ENGINE_SERVICES ?? 20);
const BUILDS_EACH = 3;
const REBUILD_RUNS = Number(process.env.BENCH_RUNS ?? 5);
const TOKEN = `bench-${randomBytes(16).toString('hex')}`;

interface Summary {
  id: string;
  service_id: string;
  engine?: string;
  exit_code: number | null;
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[Math.floor(values.length / 2)];
const fmt = (values: number[]) => `${(median(values) / 1000).toFixed(2)} s (${(Math.min(...values) / 1000).toFixed(2)}–${(Math.max(...values) / 1000).toFixed(2)})`;

async function api(server: ServerProcess, method: string, route: string): Promise<unknown> {
  const res = await fetch(`http://127.0.0.1:${server.httpPort}${route}`, { method, headers: { Authorization: `Bearer ${TOKEN}` } });
  if (!res.ok) throw new Error(`${method} ${route}: ${res.status} ${await res.text()}`);
  return res.json();
}

/** One build over SSH, timed from spawn to exit; its summary from the API (the newest build of the service). */
async function build(server: ServerProcess, service: string, repo: GitRepo, revision: string): Promise<{ ms: number; summary: Summary }> {
  const t0 = performance.now();
  // One word for ssh: it joins its arguments with spaces for the remote side to split again.
  const r = await ssh(server, [quote(['buildbot.sh', ...buildArgs({ service, repo: repo.url, revision, image: `bench/${service}`, tags: ['latest'] })])]);
  const ms = performance.now() - t0;
  if (r.code !== 0) throw new Error(`build of ${service} exited ${r.code}: ${r.stderr.slice(-2000)}`);
  const { builds } = (await api(server, 'GET', `/api/v1/builds?service=${encodeURIComponent(service)}&limit=1`)) as { builds: Summary[] };
  return { ms, summary: builds[0] };
}

function shuffled<T>(items: T[]): T[] {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
}

export async function engineRows(): Promise<string[]> {
  const second = new SecondEngine();
  await second.start();
  const repo = new GitRepo(`bench-engines-${process.pid}`);
  repo.commit(staticSite());
  let server: ServerProcess | undefined;
  const lines: string[] = [];
  try {
    server = await startServer({ args: ['--api-token', TOKEN, '--max-builds', '4', '--engine', `one=unix://${engineSocket()}`, '--engine', `two=unix://${second.socket}`] });
    const services = Array.from({ length: SERVICES }, (_, i) => `bench-eng-${process.pid}-${i}`);
    // A commit of its own per service: its image layers are its own, so an engine holding another
    // service's layers holds nothing of this one's (the same tree would hit the same cache anywhere).
    const revision = new Map(services.map((s) => [s, repo.commit({ 'site/index.html.in': `<h1>${s} @VERSION@</h1>\n` })]));
    const order = shuffled(services.flatMap((s) => Array.from({ length: BUILDS_EACH }, () => s)));
    const first = new Map<string, string>();
    let later = 0;
    let onCache = 0;
    const used = new Map<string, number>();
    for (const service of order) {
      const { summary } = await build(server, service, repo, revision.get(service)!);
      const engine = summary.engine ?? '?';
      used.set(engine, (used.get(engine) ?? 0) + 1);
      if (!first.has(service)) {
        first.set(service, engine);
        continue;
      }
      later++;
      if (engine === first.get(service)) onCache++;
    }
    lines.push(`| engines a. ${SERVICES} services × ${BUILDS_EACH} builds in shuffled order over two engines: second and third builds on the engine of the first | ${onCache} of ${later} (${((100 * onCache) / later).toFixed(0)} %); builds per engine: ${[...used].map(([e, n]) => `${e} ${n}`).join(', ')} | all of them | ${onCache === later ? 'met' : 'missed'} |`);

    // A rebuild where the service's cache is, against the same rebuild with that engine drained
    // (forced onto the other, which has never built this service): a different service each run.
    const preferredTimes: number[] = [];
    const forcedTimes: number[] = [];
    for (const service of services.slice(0, Math.min(REBUILD_RUNS, services.length))) {
      const preferred = first.get(service)!;
      preferredTimes.push((await build(server, service, repo, revision.get(service)!)).ms);
      await api(server, 'POST', `/api/v1/engines/${preferred}/drain`);
      try {
        const forced = await build(server, service, repo, revision.get(service)!);
        if (forced.summary.engine === preferred) throw new Error('a drained engine took a build');
        forcedTimes.push(forced.ms);
      } finally {
        await api(server, 'POST', `/api/v1/engines/${preferred}/resume`);
      }
    }
    lines.push(`| engines b. rebuild of a built revision: on its preferred engine, and the same rebuild forced onto the other (preferred drained) | preferred ${fmt(preferredTimes)}; other ${fmt(forcedTimes)} | ratio ${(median(preferredTimes) / median(forcedTimes)).toFixed(2)} | what affinity buys | – |`);
  } finally {
    await server?.stop();
    if (server) rmSync(server.workDir, { recursive: true, force: true });
    repo.dispose();
    await second.stop();
  }
  const decisions = (await benchRouting()).filter((r) => r.what.startsWith('decision'));
  lines.push(`| engines c. the routing decision per build (rank + take and give back a slot, free engines; 100,000 decisions) | ${decisions.map((r) => `${r.engines} engine${r.engines > 1 ? 's' : ''}: ${r.microseconds.toFixed(1)} µs`).join('; ')} | – | under 1 ms | ${decisions.every((r) => r.microseconds < 1000) ? 'met' : 'missed'} |`);
  return lines;
}

if (process.argv[1]?.endsWith('engines.js')) {
  const lines = await engineRows();
  process.stdout.write(`| row | measured | | target | |\n| --- | --- | --- | --- | --- |\n${lines.join('\n')}\n`);
}
