/**
 * Soak (issue 9): 30 builds of mixed outcomes across 10 services against one real server with
 * --max-builds 4: builds that succeed, builds whose build.sh fails, builds whose client is
 * killed (cancel) and builds whose client freezes behind a relay (disconnect: the keepalive
 * must end them). At the end every exit code must be the expected one, and no container, key
 * file or service lock may remain; the server's RSS (idle, peak, after) is reported.
 * A bench script, not a test: it measures memory, and takes a minute or more on a loaded machine.
 * Run: bash bench/soak.sh   (brings up the test environment, as npm test does)
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { quote } from 'shell-quote';
import { buildArgs } from '../test/helpers/build.js';
import type { RunResult } from '../test/helpers/cli.js';
import { buildContainers } from '../test/helpers/docker.js';
import { GitRepo, removeAll, staticSite } from '../test/helpers/repos.js';
import { startServer, startSsh } from '../test/helpers/server.js';
import { startTcpRelay } from '../test/helpers/tcp-relay.js';

type Kind = 'success' | 'fail' | 'cancel' | 'disconnect';
const KINDS: Kind[] = ['success', 'fail', 'cancel', 'disconnect'];
const SERVICES = 10;
const BUILDS = 30;
/** SOAK_ROUNDS=2 runs the 30 builds again: RSS that grows no further in the second round is a plateau, not a leak. */
const ROUNDS = Number(process.env.SOAK_ROUNDS) || 1;
const EXPECTED: Record<Kind, number> = { success: 0, fail: 3, cancel: 130, disconnect: 130 };

/**
 * SOAK_HEAP=1: the server writes a heap snapshot (V8 collects garbage first) at idle and after
 * each round; the live heap of each is reported, and what grew most between the last two. RSS
 * alone cannot tell a leak from a heap V8 has not shrunk yet.
 */
const HEAP = process.env.SOAK_HEAP === '1';

interface HeapSummary {
  totalMb: number;
  /** "type name" -> count and bytes of the objects of that constructor (or kind). */
  groups: Map<string, { count: number; bytes: number }>;
}

/** Has the server (started with --heapsnapshot-signal=SIGUSR2, in dir) write a snapshot, and sums it up. */
async function heapSnapshot(pid: number, dir: string): Promise<HeapSummary> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  let file: string | undefined;
  for (const deadline = Date.now() + 120_000; !file; await sleep(200)) {
    if (Date.now() > deadline) throw new Error('no heap snapshot within 120 s');
    const fresh = readdirSync(dir).find((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    // Written in pieces: complete once it parses.
    if (fresh) {
      try {
        const text = readFileSync(path.join(dir, fresh), 'utf8');
        JSON.parse(text);
        file = fresh;
      } catch {
        // not complete yet
      }
    }
  }
  const snapshot = JSON.parse(readFileSync(path.join(dir, file), 'utf8')) as {
    snapshot: { meta: { node_fields: string[]; node_types: [string[]] } };
    nodes: number[];
    strings: string[];
  };
  rmSync(path.join(dir, file));
  const fields = snapshot.snapshot.meta.node_fields;
  const [typeAt, nameAt, sizeAt] = ['type', 'name', 'self_size'].map((f) => fields.indexOf(f));
  const types = snapshot.snapshot.meta.node_types[0];
  const groups = new Map<string, { count: number; bytes: number }>();
  let total = 0;
  for (let i = 0; i < snapshot.nodes.length; i += fields.length) {
    const type = types[snapshot.nodes[i + typeAt]];
    const size = snapshot.nodes[i + sizeAt];
    total += size;
    // Strings and code by kind; objects and closures by constructor or function name.
    const key = type === 'object' || type === 'closure' ? `${type} ${snapshot.strings[snapshot.nodes[i + nameAt]].slice(0, 60)}` : type;
    const group = groups.get(key) ?? { count: 0, bytes: 0 };
    group.count++;
    group.bytes += size;
    groups.set(key, group);
  }
  return { totalMb: total / 1024 / 1024, groups };
}

/** The groups that grew most from one snapshot to the next, by bytes. */
function growth(from: HeapSummary, to: HeapSummary, top = 8): string[] {
  return [...to.groups].map(([key, g]) => ({ key, count: g.count - (from.groups.get(key)?.count ?? 0), bytes: g.bytes - (from.groups.get(key)?.bytes ?? 0) }))
    .sort((a, b) => b.bytes - a.bytes).slice(0, top)
    .map((g) => `${g.key}: ${g.count >= 0 ? '+' : ''}${g.count} objects, ${(g.bytes / 1024).toFixed(0)} KB`);
}

const rssMb = (pid: number) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

async function main(): Promise<void> {
  const run = process.pid;
  const snapshots = mkdtempSync(path.join(os.tmpdir(), 'soak-heap-'));
  const server = await startServer({
    args: ['--max-builds', '4', '--keepalive-interval', '1', '--keepalive-count', '2'],
    ...(HEAP ? { env: { NODE_OPTIONS: '--heapsnapshot-signal=SIGUSR2' }, cwd: snapshots } : {}),
  });
  const pid = server.child.pid!;
  const heaps: HeapSummary[] = [];
  // One repository per service, one branch per outcome.
  const repos = Array.from({ length: SERVICES }, (_, i) => {
    const repo = new GitRepo(`soak-${run}-${i}`);
    repo.commit(staticSite(), 'ok', 'success');
    repo.commit(staticSite({ buildExtra: 'exit 3' }), 'fails', 'fail');
    repo.commit(staticSite({ buildExtra: 'echo "slow build started"; sleep 120' }), 'slow', 'slow');
    return repo;
  });
  await sleep(2000);
  if (HEAP) heaps.push(await heapSnapshot(pid, snapshots));
  const idle = rssMb(pid);
  let peak = idle;
  const sampler = setInterval(() => (peak = Math.max(peak, rssMb(pid))), 100);

  const started = Date.now();
  const outcomes: Array<{ n: number; kind: Kind; service: string; code: number | null }> = [];
  const afterRound: number[] = [];
  for (let round = 0; round < ROUNDS; round++) {
    outcomes.push(...await Promise.all(Array.from({ length: BUILDS }, async (_, i) => {
      const n = round * BUILDS + i;
      const kind = KINDS[n % KINDS.length];
      const service = `soak-${run}-${n % SERVICES}`;
      const repo = repos[n % SERVICES];
      const revision = kind === 'success' || kind === 'fail' ? kind : 'slow';
      const args = remote(buildArgs({ service, repo: repo.url, revision, image: service, tags: [`b${n}`] }));
      let result: RunResult;
      if (kind === 'disconnect') {
        const relay = await startTcpRelay(server.port);
        const client = startSsh({ port: relay.port }, args);
        await client.waitFor(/slow build started/, 600_000);
        relay.freeze();
        // The keepalive gives the client up and cancels the build; the frozen client never learns.
        const cancelled = () => server.log().split(`build-end`).filter((l) => l.includes(` service=${service} exit=130`)).length;
        const before = cancelled();
        relay.freeze();
        for (const deadline = Date.now() + 120_000; cancelled() === before;) {
          if (Date.now() > deadline) throw new Error(`the keepalive did not end build ${n}`);
          await sleep(100);
        }
        client.child.kill('SIGKILL');
        await relay.stop();
        result = await client.done;
      } else {
        const client = startSsh(server, args);
        if (kind === 'cancel') {
          await client.waitFor(/slow build started/, 600_000);
          client.child.kill('SIGTERM');
        }
        result = await client.done;
      }
      return { n, kind, service, code: result.code };
    })));
    await sleep(3000);
    afterRound.push(rssMb(pid));
    if (HEAP) heaps.push(await heapSnapshot(pid, snapshots));
  }
  const wall = (Date.now() - started) / 1000;

  // What the server says each build ended with, by the exit codes it logged.
  const ends = [...server.log().matchAll(/ build-end build=\w+ service=(\S+) exit=(\d+)/g)].map((m) => ({ service: m[1], exit: Number(m[2]) }));
  const problems: string[] = [];
  const count = (codes: number[], code: number) => codes.filter((c) => c === code).length;
  for (const kind of KINDS) {
    const mine = outcomes.filter((o) => o.kind === kind);
    if (kind === 'success' || kind === 'fail') {
      for (const o of mine) if (o.code !== EXPECTED[kind]) problems.push(`build ${o.n} (${kind}) exited ${o.code}, expected ${EXPECTED[kind]}`);
    }
  }
  const logged = ends.map((e) => e.exit);
  const wanted = (code: number) => outcomes.filter((o) => EXPECTED[o.kind] === code).length;
  for (const code of [0, 3, 130]) if (count(logged, code) !== wanted(code)) problems.push(`the server logged ${count(logged, code)} builds ending ${code}, expected ${wanted(code)}`);

  for (let i = 0; i < 100 && (await buildContainers()).length; i++) await sleep(200);
  const left = await buildContainers();
  if (left.length) problems.push(`${left.length} build containers left`);
  const keys = existsSync(path.join(server.workDir, '.keys')) ? readdirSync(path.join(server.workDir, '.keys')) : [];
  if (keys.length) problems.push(`${keys.length} key dirs left`);
  const locks = existsSync(path.join(server.workDir, '.locks')) ? readdirSync(path.join(server.workDir, '.locks')).filter((f) => f.endsWith('.lock')) : [];
  if (locks.length) problems.push(`service locks still held: ${locks.join(', ')}`);

  await sleep(3000);
  clearInterval(sampler);
  const after = rssMb(pid);
  await server.stop();
  removeAll(server.workDir);
  repos.forEach((r) => r.dispose());

  const byKind = KINDS.map((k) => `${k} ${outcomes.filter((o) => o.kind === k).length}`).join(', ');
  console.log(`soak: ${BUILDS * ROUNDS} builds (${byKind}) across ${SERVICES} services, --max-builds 4: ${wall.toFixed(1)} s wall`);
  console.log(`soak: server RSS idle ${idle.toFixed(1)} MB, peak ${peak.toFixed(1)} MB, after each round ${afterRound.map((r) => r.toFixed(1)).join(', ')} MB, at the end ${after.toFixed(1)} MB`);
  if (HEAP) {
    console.log(`soak: live heap after a collection: idle ${heaps[0].totalMb.toFixed(1)} MB, after each round ${heaps.slice(1).map((h) => h.totalMb.toFixed(1)).join(', ')} MB`);
    const [from, to] = heaps.slice(-2);
    console.log(`soak: grew most between the last two snapshots:\n  ${growth(from, to).join('\n  ')}`);
  }
  rmSync(snapshots, { recursive: true, force: true });
  if (problems.length) {
    console.log(`soak: FAILED\n  ${problems.join('\n  ')}`);
    process.exitCode = 1;
  } else {
    console.log('soak: every exit code as expected; no container, key file or service lock left');
  }
}

await main();
