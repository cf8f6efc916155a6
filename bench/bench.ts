/**
 * `npm run bench`: the same builds through the original tool's script (bench/original.sh behind
 * OpenSSH sshd, the yardstick of the headline ratios), a thorough script doing our work
 * (bench/baseline.sh, also behind sshd), bin/buildbot-server with the OpenSSH client, and
 * bin/buildbot.sh locally; every row measured side by side in one run. Prints a markdown table
 * (medians, min–max).
 */
import { execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import ssh2 from 'ssh2';
import { quote } from 'shell-quote';
import { buildArgs } from '../test/helpers/build.js';
import { runAttached } from '../src/docker/containers.js';
import { ROOT } from '../test/helpers/cli.js';
import { docker } from '../test/helpers/docker.js';
import { engineEnv, keyPath, testEnv } from '../test/helpers/env.js';
import { GitRepo, staticSite, type Files } from '../test/helpers/repos.js';
import { startServer, type ServerProcess } from '../test/helpers/server.js';

const RUNS = Number(process.env.BENCH_RUNS ?? 5);
const BIG_RUNS = Number(process.env.BENCH_BIG_RUNS ?? 3);
const STREAM_MB = Number(process.env.BENCH_STREAM_MB ?? 200);
/**
 * Rows 1-3 pause this long after every build, whoever ran it: work a contender leaves running
 * after its exit (our server makes the service's spare network namespace then) must not land in
 * the next contender's time.
 */
const PAUSE_MS = Number(process.env.BENCH_PAUSE_MS ?? 500);
/** More flags for the server (an A/B of a server setting, e.g. BENCH_SERVER_ARGS='--spare-network 0'). */
const SERVER_ARGS = process.env.BENCH_SERVER_ARGS?.split(' ').filter(Boolean) ?? [];
const pause = () => new Promise((resolve) => setTimeout(resolve, PAUSE_MS));

/**
 * original: the original tool's script as its users ran it (bench/original.sh behind sshd), the
 * yardstick of the headline ratios; thorough: a script doing the same work as ours (bench/baseline.sh).
 */
type ContenderName = 'original' | 'thorough' | 'ours-ssh' | 'ours-local';
const CONTENDERS: ContenderName[] = ['original', 'thorough', 'ours-ssh', 'ours-local'];
/** The scripts run behind the git host's sshd, and their work dirs. */
const SCRIPTS = { original: 'bench/original.sh', thorough: 'bench/baseline.sh' } as const;
/** Run i starts with a different contender: whoever goes first pays for cold caches and first pushes. */
const inTurn = (i: number, who: ContenderName[] = CONTENDERS): ContenderName[] => who.map((_, k) => who[(i + k) % who.length]);
/**
 * Row 4 leaves the original script out: its build container logs to the engine's json-file
 * log (~9x slower for line-heavy output, see BENCHMARKS.md), which says nothing about us.
 */
const STREAMERS: ContenderName[] = ['thorough', 'ours-ssh', 'ours-local'];

interface Run {
  ms: number;
  code: number | null;
  /** Time from the first byte after the START line to the END line, when the output has them. */
  streamMs?: number;
  payloadBytes?: number;
  /** CPU time between the START and END lines: `machine` (all processes, kernel included), and any process probed. */
  streamCpuMs?: Record<string, number>;
  /** When the START and END lines arrived (performance.now()). */
  startAt?: number;
  endAt?: number;
}

/** CPU time the whole machine has spent busy so far, in ms (/proc/stat: user, nice, system, irq, softirq; 100 ticks a second). */
function machineBusyMs(): number {
  const [user, nice, system, , , irq, softirq] = readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  return (user + nice + system + irq + softirq) * 10;
}

/** CPU time one process has used so far, in ms (user + system). */
function processCpuMs(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) * 10;
}

type CpuProbes = Record<string, () => number>;

let server: ServerProcess;
const env = testEnv();
const localWork = path.join(os.tmpdir(), 'buildbot-bench-local');
const scriptWork = { original: path.join(os.tmpdir(), 'buildbot-bench-original'), thorough: path.join(os.tmpdir(), 'buildbot-bench-baseline') };
/** The command line a script contender runs on the git host's sshd. */
const scriptCommand = (who: keyof typeof SCRIPTS, args: string[]) =>
  quote(['env', ...Object.entries(engineEnv()).map(([k, v]) => `${k}=${v}`), `BASELINE_WORK_DIR=${scriptWork[who]}`, path.join(ROOT, SCRIPTS[who]), ...args]);
const sshBase = ['-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null', '-o', 'LogLevel=ERROR',
  '-o', 'IdentitiesOnly=yes', '-i', keyPath('client_ed25519'), '-F', '/dev/null'];

/** The command line each contender runs for a build. */
function command(who: ContenderName, args: string[], port = server.port): [string, string[], NodeJS.ProcessEnv] {
  const base = { PATH: process.env.PATH, HOME: process.env.HOME, ...engineEnv() };
  if (who === 'original' || who === 'thorough') return ['ssh', [...sshBase, '-p', String(env.gitPort), 'root@127.0.0.1', scriptCommand(who, args)], base];
  if (who === 'ours-ssh') return ['ssh', [...sshBase, '-p', String(port), 'root@127.0.0.1', quote(['buildbot.sh', ...args])], base];
  return [path.join(ROOT, 'bin/buildbot.sh'), args, { ...base, BUILDBOT_WORK_DIR: localWork }];
}

const MARK_START = Buffer.from('\nSTART\n');
const MARK_END = Buffer.from('\nEND\n');

/** Watches output for the START and END lines: the payload between them, its time, and the machine's CPU meanwhile. */
class StreamMarks {
  private tail = Buffer.alloc(0);
  private startAt?: number;
  private endAt?: number;
  private cpuAtStart: Record<string, number> = {};
  private cpuAtEnd: Record<string, number> = {};
  private payload = 0;

  constructor(private readonly probes: CpuProbes = {}) {}

  private readCpu(): Record<string, number> {
    return Object.fromEntries(Object.entries({ machine: machineBusyMs, ...this.probes }).map(([name, probe]) => [name, probe()]));
  }

  /**
   * Runs for every chunk the client delivers, in the same process as the clock, so it copies
   * nothing but the few bytes kept for a mark cut in two: copying each chunk here once cost
   * ~1 ms of CPU per MB, on the cores the contenders share.
   */
  feed(chunk: Buffer): void {
    const now = performance.now();
    let from = 0;
    if (this.startAt === undefined) {
      const i = this.find(MARK_START, chunk, 0);
      if (i !== undefined) {
        this.startAt = now;
        this.cpuAtStart = this.readCpu();
        this.payload -= i + MARK_START.length;
        from = i + MARK_START.length - 1; // "\nSTART\nEND\n": the marks share a newline
      }
    }
    if (this.startAt !== undefined && this.endAt === undefined) {
      this.payload += chunk.length;
      const j = this.find(MARK_END, chunk, from);
      if (j !== undefined) {
        this.endAt = now;
        this.cpuAtEnd = this.readCpu();
        this.payload -= chunk.length - j;
      }
    }
    const keep = MARK_START.length - 1;
    this.tail = chunk.length >= keep ? Buffer.from(chunk.subarray(chunk.length - keep)) : Buffer.concat([this.tail, chunk]).subarray(-keep);
  }

  /** Where mark begins relative to chunk (negative: in the bytes kept from before), searching from `from`. */
  private find(mark: Buffer, chunk: Buffer, from: number): number | undefined {
    if (from === 0) {
      const edge = Buffer.concat([this.tail, chunk.subarray(0, mark.length - 1)]).indexOf(mark);
      if (edge >= 0 && edge < this.tail.length) return edge - this.tail.length;
    }
    const at = chunk.indexOf(mark, Math.max(0, from));
    return at >= 0 ? at : undefined;
  }

  result(): Pick<Run, 'streamMs' | 'payloadBytes' | 'streamCpuMs' | 'startAt' | 'endAt'> {
    if (this.startAt === undefined || this.endAt === undefined) return {};
    return { streamMs: this.endAt - this.startAt, payloadBytes: this.payload, streamCpuMs: Object.fromEntries(Object.keys(this.cpuAtEnd).map((k) => [k, this.cpuAtEnd[k] - this.cpuAtStart[k]])), startAt: this.startAt, endAt: this.endAt };
  }
}

/** Runs one build, timing it from spawn to exit, and the payload between START and END if any. */
function run(who: ContenderName, args: string[], probes?: (client: number) => CpuProbes, port?: number, onText?: (text: string) => void): Promise<Run> {
  const [cmd, argv, childEnv] = command(who, args, port);
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, argv, { env: childEnv, stdio: ['ignore', 'pipe', 'pipe'] });
    const marks = new StreamMarks(probes?.(child.pid!));
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => marks.feed(chunk));
    if (onText) child.stdout.on('data', (chunk: Buffer) => onText(chunk.toString('latin1')));
    child.stderr.on('data', (d: Buffer) => (stderr = (stderr + d.toString()).slice(-4000)));
    // BENCH_HEADERS=1: print each build's step headers, to see what dominates a row.
    if (process.env.BENCH_HEADERS) {
      let rest = '';
      child.stdout.on('data', (d: Buffer) => {
        rest += d.toString('latin1');
        const lines = rest.split('\n');
        rest = lines.pop()!;
        for (const l of lines) if (/^\d+(\.\d+)?m?s \| #/.test(l)) process.stderr.write(`bench: ${who}: ${l}\n`);
        if (rest.length > 1000) rest = '';
      });
    }
    child.on('error', reject);
    child.on('close', (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) process.stderr.write(`bench: ${who} exited ${code}: ${stderr}\n`);
      resolve({ ms, code, ...marks.result() });
    });
  });
}

interface Stats { median: number; min: number; max: number }
const stats = (values: number[]): Stats => {
  const s = [...values].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return { median: s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2, min: s[0], max: s[s.length - 1] };
};
const percentile = (values: number[], p: number) => {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil((p / 100) * s.length) - 1)];
};
const fmtS = (st: Stats) => `${(st.median / 1000).toFixed(2)} s (${(st.min / 1000).toFixed(2)}–${(st.max / 1000).toFixed(2)})`;

const table: string[] = [];
const notes: string[] = [];
const traceTable: string[] = [];
function row(cells: string[]): void {
  table.push(`| ${cells.join(' | ')} |`);
  process.stderr.write(`bench: ${cells.join(' | ')}\n`);
}

/**
 * A build's flags, the same for every contender: buildArgs plus --docker_login_cache, which the
 * original script's users passed so that it skipped `docker login` once logged in.
 */
function benchArgs(a: Parameters<typeof buildArgs>[0]): string[] {
  return [...buildArgs(a), '--docker_login_cache', Buffer.from(`${env.registryUser}:${env.registryPassword}`).toString('base64')];
}

/** A row of build times: every contender's median (min–max), ours over SSH against both scripts. */
function timeRow(label: string, t: Record<ContenderName, number[]>, target: string, met: (vsOriginal: number, vsThorough: number) => boolean): void {
  const [o, b, s, l] = CONTENDERS.map((who) => stats(t[who]));
  const vsO = s.median / o.median;
  const vsT = s.median / b.median;
  row([label, fmtS(o), fmtS(b), fmtS(s), fmtS(l), vsO.toFixed(2), vsT.toFixed(2), target, met(vsO, vsT) ? 'met' : 'missed']);
}

const emptyTimes = (): Record<ContenderName, number[]> => ({ original: [], thorough: [], 'ours-ssh': [], 'ours-local': [] });

function image(name: string, who: ContenderName) {
  return `bench-${name}-${who}`;
}

/** Rows 1-3: each contender on its own services and images, runs interleaved so drift hits all alike. */
async function buildRows(): Promise<void> {
  const repo = new GitRepo(`bench-site-${process.pid}`);
  repo.commit(staticSite());
  const times = { cold: emptyTimes(), warm: emptyTimes(), rebuild: emptyTimes() };
  for (const who of CONTENDERS) {
    // One unmeasured build per contender: the engine's layer cache and the registry's layers are warm for all.
    await run(who, benchArgs({ service: `warmup-${who}`, repo: repo.url, revision: 'main', image: image('site', who), tags: ['0', 'latest'] }));
    await pause();
  }
  for (let i = 0; i < RUNS; i++) {
    for (const who of inTurn(i)) {
      const r = await run(who, benchArgs({ service: `cold-${who}-${i}`, repo: repo.url, revision: 'main', image: image('site', who), tags: [`1.${i}`, 'latest'] }));
      await pause();
      times.cold[who].push(r.ms);
    }
  }
  for (let i = 0; i < RUNS; i++) {
    const sha = repo.commit({ 'site/index.html.in': `<h1>revision ${i} @VERSION@</h1>\n` });
    for (const who of inTurn(i)) {
      const r = await run(who, benchArgs({ service: `warmup-${who}`, repo: repo.url, revision: sha, image: image('site', who), tags: [`2.${i}`, 'latest'] }));
      await pause();
      times.warm[who].push(r.ms);
    }
  }
  const last = repo.head();
  for (let i = 0; i < RUNS; i++) {
    for (const who of inTurn(i)) {
      const r = await run(who, benchArgs({ service: `warmup-${who}`, repo: repo.url, revision: last, image: image('site', who), tags: [`3.${i}`, 'latest'] }));
      await pause();
      times.rebuild[who].push(r.ms);
    }
  }
  timeRow('1. cold build (clone, build.sh, image, test, push)', times.cold, '≤ 0.75 of original', (o) => o <= 0.75);
  timeRow('2. warm build (new revision: fetch)', times.warm, '≤ 0.60 of original', (o) => o <= 0.6);
  timeRow('3. rebuild of a built revision', times.rebuild, '≤ 0.75 of original', (o) => o <= 0.75);
  repo.dispose();
}

/** Row b2b: builds of one service back to back, each started the moment the previous one exited. */
const B2B_BUILDS = Number(process.env.BENCH_B2B_BUILDS ?? 20);
const B2B_ROUNDS = Number(process.env.BENCH_B2B_ROUNDS ?? 2);

/**
 * Row b2b (issue 22): B2B_BUILDS builds of one service with no pause between them, as a busy CI
 * sends them: new revisions (committed beforehand, so no push sits between two builds), then
 * rebuilds of the last one. Work a build leaves running after its exit lands on the next one
 * here, unlike rows 1-3, which pause after every build. Original script against ours over SSH,
 * the contenders' turns alternating by round, with a pause between two contenders' turns only.
 */
async function backToBackRow(): Promise<void> {
  const who2: ContenderName[] = ['original', 'ours-ssh'];
  const repo = new GitRepo(`bench-b2b-${process.pid}`);
  repo.commit(staticSite());
  const times = { revision: emptyTimes(), rebuild: emptyTimes() };
  let failed = 0;
  const build = async (who: ContenderName, revision: string, tag: string) => {
    const r = await run(who, benchArgs({ service: `b2b-${who}`, repo: repo.url, revision, image: image('b2b', who), tags: [tag, 'latest'] }));
    if (r.code !== 0) failed++;
    return r.ms;
  };
  // Two unmeasured builds each: the clone exists, and our server has built the service before (it then keeps spares).
  for (const who of who2) {
    await build(who, 'main', 'w0');
    await build(who, 'main', 'w1');
    await pause();
  }
  for (let round = 0; round < B2B_ROUNDS; round++) {
    const shas: string[] = [];
    for (let k = 0; k < B2B_BUILDS; k++) shas.push(repo.commit({ 'site/index.html.in': `<h1>b2b ${round}.${k} @VERSION@</h1>\n` }));
    for (const who of inTurn(round, who2)) {
      await pause();
      for (let k = 0; k < B2B_BUILDS; k++) times.revision[who].push(await build(who, shas[k], `r${round}.${k}`));
      for (let k = 0; k < B2B_BUILDS; k++) times.rebuild[who].push(await build(who, shas.at(-1)!, `b${round}.${k}`));
    }
  }
  for (const [kind, label] of [['revision', 'new revisions'], ['rebuild', 'rebuilds']] as const) {
    const o = stats(times[kind].original);
    const s = stats(times[kind]['ours-ssh']);
    const vsO = s.median / o.median;
    row([`b2b. ${B2B_BUILDS} ${label} of one service back to back (${B2B_ROUNDS} rounds)`, fmtS(o), '–', fmtS(s), '–', vsO.toFixed(2), '–', '≤ 0.75 of original', vsO <= 0.75 ? 'met' : 'missed']);
  }
  if (failed) notes.push(`- Row b2b: ${failed} builds failed (see stderr).`);
  repo.dispose();
}

const GO_RUNS = Number(process.env.BENCH_GO_RUNS ?? 3);
const GO_BUILDER = 'buildbot-bench/go-builder:1';

/**
 * A Go service for the Go rows: main imports a good part of the standard library (net/http and
 * friends), built with CGO_ENABLED=0 and -trimpath, so Debian's precompiled standard library is
 * not used and a cold build compiles it all. GOCACHE and GOMODCACHE are under #build_cache; the
 * original script ignores that line (its builder's caches go with its container).
 */
function goService(version: string): Files {
  const imports = ['archive/zip', 'compress/gzip', 'crypto/tls', 'crypto/x509', 'database/sql', 'encoding/json', 'encoding/xml', 'flag', 'fmt',
    'html/template', 'image/png', 'math/big', 'net/http', 'net/http/httptest', 'net/mail', 'net/rpc', 'net/smtp', 'os', 'regexp', 'text/template'];
  return {
    'go.mod': 'module example.com/svc\n\ngo 1.19\n',
    'main.go': [
      'package main',
      '',
      `import (\n${imports.map((i) => `\t"${i}"`).join('\n')}\n\n\t"example.com/svc/internal/version"\n)`,
      '',
      'var _ = []interface{}{zip.NewWriter, gzip.NewReader, tls.Client, x509.NewCertPool, sql.Open, json.Marshal, xml.Marshal, html.HTMLEscapeString, png.Decode, big.NewInt, httptest.NewServer, mail.ParseAddress, rpc.NewServer, smtp.Dial, regexp.MustCompile, template.New}',
      '',
      'func main() {',
      '\tself := flag.Bool("self-test", false, "print the version and exit")',
      '\tflag.Parse()',
      '\tif *self {',
      '\t\tfmt.Println("svc", version.Version)',
      '\t\tos.Exit(0)',
      '\t}',
      '\t_ = http.ListenAndServe(":8080", nil)',
      '}',
      '',
    ].join('\n').replace('\t"html/template"', '\thtml "html/template"'),
    'internal/version/version.go': `package version\n\nconst Version = "${version}"\n`,
    'build.sh': {
      mode: 0o755,
      content: [
        '#!/bin/sh',
        `#build_inside_docker_image=${GO_BUILDER}`,
        '#build_cache=/cache/go-build /cache/go-mod',
        'set -e',
        'export GOCACHE=/cache/go-build GOMODCACHE=/cache/go-mod GOFLAGS=-trimpath CGO_ENABLED=0 GOPROXY=off',
        'start=$(date +%s%N)',
        'go build -o app .',
        'echo "go build: $(( ($(date +%s%N) - start) / 1000000 )) ms"',
      ].join('\n') + '\n',
    },
    '.dockerignore': '*\n!app\n!Dockerfile\n',
    Dockerfile: `FROM ${env.busyboxImage}\nCOPY app /app\n#test_in_container_entrypoint=/app -self-test\n`,
  };
}

/**
 * Rows go (issue 22): a real compiler. Cold build (a new service: empty caches), a new revision
 * that changes one source file, and a rebuild, the original script against ours over SSH, runs
 * interleaved. Also the `go build` time build.sh itself printed: the floor of each kind.
 */
async function goRows(): Promise<void> {
  try {
    execFileSync('bash', [path.join(ROOT, 'bench/go-builder.sh')], { stdio: ['ignore', 'inherit', 'inherit'] });
  } catch {
    notes.push('- Go rows: not run, the Go builder could not be made here (bench/go-builder.sh said why).');
    return;
  }
  const who2: ContenderName[] = ['original', 'ours-ssh'];
  const repo = new GitRepo(`bench-go-${process.pid}`);
  repo.commit(goService('0'));
  const kinds = ['cold', 'revision', 'rebuild'] as const;
  const times = Object.fromEntries(kinds.map((k) => [k, emptyTimes()])) as Record<(typeof kinds)[number], Record<ContenderName, number[]>>;
  const goMs = Object.fromEntries(kinds.map((k) => [k, emptyTimes()])) as typeof times;
  let failed = 0;
  const build = async (kind: (typeof kinds)[number] | 'warmup', who: ContenderName, service: string, revision: string, tag: string) => {
    let printed = '';
    const r = await run(who, benchArgs({ service, repo: repo.url, revision, image: image('go', who), tags: [tag, 'latest'] }), undefined, undefined, (text) => (printed += text));
    if (r.code !== 0) failed++;
    const go = /^go build: (\d+) ms$/m.exec(printed);
    if (kind !== 'warmup') {
      times[kind][who].push(r.ms);
      if (go) goMs[kind][who].push(Number(go[1]));
    }
    await pause();
  };
  for (const who of who2) await build('warmup', who, `go-warmup-${who}`, 'main', 'w');
  for (let i = 0; i < GO_RUNS; i++) {
    const sha = repo.head();
    for (const who of inTurn(i, who2)) await build('cold', who, `go-${who}-${i}-${process.pid}`, sha, `c${i}`);
    const next = repo.commit({ 'internal/version/version.go': `package version\n\nconst Version = "${i + 1}"\n` });
    for (const who of inTurn(i, who2)) await build('revision', who, `go-${who}-${i}-${process.pid}`, next, `n${i}`);
    for (const who of inTurn(i, who2)) await build('rebuild', who, `go-${who}-${i}-${process.pid}`, next, `r${i}`);
  }
  const labels = { cold: 'go 1. cold build (empty caches; compiles net/http and friends)', revision: 'go 2. new revision (one source file changed)', rebuild: 'go 3. rebuild of a built revision' };
  const targets = { cold: ['≤ 1.0 of original', 1.0], revision: ['≤ 0.2 of original', 0.2], rebuild: ['≤ 0.2 of original', 0.2] } as const;
  for (const kind of kinds) {
    const o = stats(times[kind].original);
    const s = stats(times[kind]['ours-ssh']);
    const vsO = s.median / o.median;
    row([labels[kind], fmtS(o), '–', fmtS(s), '–', vsO.toFixed(2), '–', targets[kind][0], vsO <= targets[kind][1] ? 'met' : 'missed']);
    const floor = (who: ContenderName) => (goMs[kind][who].length ? `${(stats(goMs[kind][who]).median / 1000).toFixed(2)} s` : 'n/a');
    notes.push(`- ${labels[kind]}: \`go build\` inside build.sh took ${floor('original')} (original) and ${floor('ours-ssh')} (ours), medians.`);
  }
  if (failed) notes.push(`- Go rows: ${failed} builds failed (see stderr).`);
  repo.dispose();
  // The caches of the row's services (kept by design) go with it.
  const { Volumes } = await docker.listVolumes({ filters: { label: ['io.buildbot.cache-of'] } });
  for (const v of Volumes ?? []) if (/^go-/.test(v.Labels['io.buildbot.cache-of'])) await docker.getVolume(v.Name).remove().catch(() => undefined);
}

/** Row 4: 200 MB of build.sh output; throughput between the START and END lines, and plain OpenSSH as the reference. */
async function streamRow(): Promise<void> {
  const lines = Math.round((STREAM_MB * 1_000_000) / 10);
  const repo = new GitRepo(`bench-stream-${process.pid}`);
  // The output is made first, then sent: the row measures the path to the client, not seq.
  const script = `seq -w 1 ${lines} > /tmp/out.txt\necho START\ncat /tmp/out.txt\necho END\n`;
  repo.commit({
    ...staticSite(),
    'build.sh': { mode: 0o755, content: `#!/bin/sh\n#build_inside_docker_image=${env.busyboxImage}\nset -e\nmkdir -p public && echo x > public/index.html\n${script}` },
  });
  const bigFile = path.join(os.tmpdir(), 'buildbot-bench-stream.txt');
  execFileSync('sh', ['-c', `seq -w 1 ${lines} > ${bigFile}`]);
  const bytes = Number(execFileSync('stat', ['-c', '%s', bigFile], { encoding: 'utf8' }));
  type Who = ContenderName | 'openssh' | 'engine';
  const mbps: Record<Who, number[]> = { original: [], thorough: [], 'ours-ssh': [], 'ours-local': [], openssh: [], engine: [] };
  // CPU time per MB carried, of the whole machine (what bounds throughput once every core is
  // busy) and, for ours over SSH, of the server and the ssh client: `${who} ${probe}`.
  const cpuPerMb: Record<string, number[]> = {};
  const record = (who: Who, r: Pick<Run, 'streamMs' | 'payloadBytes' | 'streamCpuMs'>) => {
    if (!r.streamMs || !r.payloadBytes) return;
    mbps[who].push(r.payloadBytes / 1e6 / (r.streamMs / 1000));
    for (const [probe, ms] of Object.entries(r.streamCpuMs ?? {})) (cpuPerMb[`${who} ${probe}`] ??= []).push(ms / (r.payloadBytes / 1e6));
  };
  const rss: number[] = [];
  const rssGrowth: number[] = [];
  // RUNS, not BIG_RUNS: throughput here varied by a fifth from run to run, and a run takes seconds.
  for (let i = 0; i < RUNS; i++) {
    for (const who of inTurn(i, STREAMERS)) {
      const samples: Array<[number, number]> = [];
      const sampler = who === 'ours-ssh' ? setInterval(() => samples.push([performance.now(), rssOf(server.child.pid!)]), 50) : undefined;
      const probes = who === 'ours-ssh' ? (client: number) => ({ server: () => processCpuMs(server.child.pid!), client: () => processCpuMs(client) }) : undefined;
      const r = await run(who, benchArgs({ service: `stream-${who}`, repo: repo.url, revision: 'main', image: image('stream', who), tags: [`${i}`] }), probes);
      clearInterval(sampler);
      record(who, r);
      const streaming = samples.filter(([t]) => r.startAt !== undefined && t >= r.startAt && t <= r.endAt!).map(([, v]) => v);
      if (streaming.length) {
        rss.push(...streaming);
        rssGrowth.push(Math.max(...streaming) - Math.min(...streaming));
      }
    }
    // The physical reference: plain OpenSSH carrying the same bytes, to a reader in this process like the contenders'.
    record('openssh', await readAll('ssh', [...sshBase, '-p', String(env.gitPort), 'root@127.0.0.1', 'cat', bigFile]));
    record('engine', await engineAlone(script));
  }
  const fmt = (st: Stats) => `${st.median.toFixed(0)} MB/s (${st.min.toFixed(0)}–${st.max.toFixed(0)})`;
  const [b, s, l, o, e] = (['thorough', 'ours-ssh', 'ours-local', 'openssh', 'engine'] as const).map((k) => stats(mbps[k]));
  row([`4. ${(bytes / 1e6).toFixed(0)} MB of build.sh output (throughput; plain \`ssh cat\`: ${fmt(o)})`, 'not run', fmt(b), fmt(s), fmt(l),
    '–', `${(s.median / b.median).toFixed(2)} (${(s.median / o.median).toFixed(2)} of ssh)`, '≥ 0.9 of thorough and ≥ 0.8 of ssh',
    s.median / b.median >= 0.9 && s.median / o.median >= 0.8 ? 'met' : 'missed']);
  const cpu = (key: string) => (cpuPerMb[key] ? stats(cpuPerMb[key]).median.toFixed(1) : '?');
  notes.push(`Row 4: server RSS while streaming: ${mb(Math.min(...rss))}–${mb(Math.max(...rss))} MB; how far it moved within each run, in order: ${rssGrowth.map(mb).join(', ')} MB.`);
  notes.push(`Row 4, the engine alone: the same container's output read through the attach API by a client that only demultiplexes it: ${fmt(e)}.`);
  notes.push(`Row 4, CPU per MB carried (medians): the whole machine (all processes and the kernel) spent ${cpu('engine machine')} ms for the engine alone, ${cpu('openssh machine')} ms for \`ssh cat\`, `
    + `${cpu('thorough machine')} ms for the thorough script, ${cpu('ours-local machine')} ms for ours local and ${cpu('ours-ssh machine')} ms for ours over SSH, `
    + `of which our server ${cpu('ours-ssh server')} ms and the ssh client ${cpu('ours-ssh client')} ms.`);
  rmSync(bigFile, { force: true });
  repo.dispose();
}

/** Runs a command and times its whole stdout, from spawn to the last byte, read as the contenders' output is. */
function readAll(cmd: string, args: string[]): Promise<Pick<Run, 'streamMs' | 'payloadBytes' | 'streamCpuMs'>> {
  return new Promise((resolve, reject) => {
    const busy0 = machineBusyMs();
    const t0 = performance.now();
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let payloadBytes = 0;
    child.stdout.on('data', (chunk: Buffer) => (payloadBytes += chunk.length));
    child.on('error', reject);
    child.on('close', () => resolve({ streamMs: performance.now() - t0, payloadBytes, streamCpuMs: { machine: machineBusyMs() - busy0 } }));
  });
}

const mb = (bytes: number) => (bytes / 1048576).toFixed(0);

/** The row-4 script's output straight from the engine (hijacked attach, demultiplexed, discarded): what any client of the engine starts from. */
async function engineAlone(script: string): Promise<ReturnType<StreamMarks['result']>> {
  const container = await docker.createContainer({
    Image: env.busyboxImage, Cmd: ['sh', '-c', script],
    HostConfig: { NetworkMode: 'none', LogConfig: { Type: 'none', Config: {} } },
  });
  try {
    const marks = new StreamMarks();
    marks.feed(Buffer.from('\n')); // START is the first line here, and is looked for after a newline
    const sink = new Writable({ write: (chunk: Buffer, _enc, done) => (marks.feed(chunk), done()) });
    // The server's own attach path (hijacked, demultiplexed), minus everything after it.
    await runAttached(container, sink, new Writable({ write: (_c, _e, done) => done() }), new AbortController().signal);
    return marks.result();
  } finally {
    await container.remove({ force: true });
  }
}

function rssOf(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
  } catch {
    return 0;
  }
}

/** Row 5: 20,000 files, ~300 MB with a few large binaries; .dockerignore leaves out a third. */
async function largeRepoRow(): Promise<void> {
  const repo = new GitRepo(`bench-large-${process.pid}`);
  const files: Files = {
    // The whole context (200 MB) is sent, but only small files are copied: the row measures context
    // handling, not who is first to upload a large layer to the registry.
    Dockerfile: `FROM ${env.busyboxImage}\nCOPY src/d1 /app/d1\nCOPY src/changed.txt VERSION /app/\n`,
    '.dockerignore': 'excluded/\n',
    'src/changed.txt': 'run -\n',
  };
  for (let i = 0; i < 20_000; i++) {
    const dir = i < 6_700 ? 'excluded' : 'src';
    files[`${dir}/d${i % 100}/f${i}.txt`] = `file ${i}\n${'x'.repeat(2_000 + (i % 2_000))}\n`;
  }
  repo.commit(files, 'many files');
  // A few large, incompressible binaries: 100 MB that is sent, 100 MB that is ignored.
  const blobs: Files = {};
  for (const name of ['src/assets/a.bin', 'src/assets/b.bin', 'excluded/assets/c.bin', 'excluded/assets/d.bin']) {
    blobs[name] = { content: randomBytes(50 << 20), mode: 0o644 };
  }
  repo.commit(blobs, 'binaries');
  const times = emptyTimes();
  for (const who of CONTENDERS) {
    await run(who, benchArgs({ service: `large-${who}`, repo: repo.url, revision: 'main', image: image('large', who), tags: ['0'] }));
  }
  for (let i = 0; i < BIG_RUNS; i++) {
    const sha = repo.commit({ 'src/changed.txt': `run ${i}\n` });
    for (const who of inTurn(i)) {
      times[who].push((await run(who, benchArgs({ service: `large-${who}`, repo: repo.url, revision: sha, image: image('large', who), tags: [`${i + 1}`] }))).ms);
    }
  }
  timeRow('5. large repository, new revision (20,000 files, 300 MB, a third ignored)', times, '≤ 1.00 of thorough', (_, t) => t <= 1);
  repo.dispose();
}

/** Row 6: ten new services at once. */
async function parallelRow(): Promise<void> {
  const repos = Array.from({ length: 10 }, (_, n) => {
    const r = new GitRepo(`bench-par${n}-${process.pid}`);
    r.commit(staticSite({ title: `service ${n}` }));
    return r;
  });
  const times = emptyTimes();
  let peak = 0;
  for (let i = 0; i < BIG_RUNS; i++) {
    for (const who of inTurn(i)) {
      const sampler = who === 'ours-ssh' ? setInterval(() => (peak = Math.max(peak, rssOf(server.child.pid!))), 50) : undefined;
      const t0 = performance.now();
      const results = await Promise.all(repos.map((r, n) =>
        run(who, benchArgs({ service: `par-${who}-${i}-${n}`, repo: r.url, revision: 'main', image: image(`par${n}`, who), tags: [`${i}`, 'latest'] }))));
      times[who].push(performance.now() - t0);
      clearInterval(sampler);
      if (results.some((r) => r.code !== 0)) notes.push(`Row 6: a ${who} build failed in run ${i}.`);
    }
  }
  timeRow(`6. ten builds of ten new services at once (server peak RSS ${mb(peak)} MB)`, times, '≤ 0.80 of thorough, RSS ≤ 150 MB',
    (_, t) => t <= 0.8 && peak <= 150 * 1048576);
  repos.forEach((r) => r.dispose());
}

/**
 * Row 6b: fifty builds of fifty new services sent at once to a server started with
 * --max-builds 8: all must succeed; the wall time and the server's peak RSS are reported.
 */
async function crowdRow(): Promise<void> {
  const crowd = await startServer({ args: ['--max-builds', '8'] });
  const repos = Array.from({ length: 10 }, (_, n) => {
    const r = new GitRepo(`bench-crowd${n}-${process.pid}`);
    r.commit(staticSite({ title: `crowd ${n}` }));
    return r;
  });
  const times: number[] = [];
  let peak = 0;
  let failed = 0;
  try {
    for (let i = 0; i < BIG_RUNS; i++) {
      const sampler = setInterval(() => (peak = Math.max(peak, rssOf(crowd.child.pid!))), 50);
      const t0 = performance.now();
      const results = await Promise.all(Array.from({ length: 50 }, (_, n) =>
        run('ours-ssh', benchArgs({ service: `crowd-${i}-${n}`, repo: repos[n % 10].url, revision: 'main', image: image(`crowd${n % 10}`, 'ours-ssh'), tags: [`${i}-${n}`, 'latest'] }), undefined, crowd.port)));
      times.push(performance.now() - t0);
      clearInterval(sampler);
      failed += results.filter((r) => r.code !== 0).length;
    }
  } finally {
    await crowd.stop();
    rmSync(crowd.workDir, { recursive: true, force: true });
    repos.forEach((r) => r.dispose());
  }
  const t = stats(times);
  row([`6b. fifty builds of fifty new services at once, --max-builds 8 (server peak RSS ${mb(peak)} MB; ${failed} failed)`, '–', '–', fmtS(t), '–', '–', '–',
    'no error', failed === 0 ? 'met' : 'missed']);
}

/**
 * The trace: the builds of rows 1-3 once more, through a server started with BUILDBOT_TRACE=1, one at
 * a time; its build-trace log lines split each step's wall time into waiting for the engine, waiting
 * for git, and the server's own CPU. A table of medians per kind of build.
 */
async function traceRows(): Promise<void> {
  const traced = await startServer({ args: ['--max-builds', '10'], env: { BUILDBOT_TRACE: '1' } });
  const repo = new GitRepo(`bench-trace-${process.pid}`);
  repo.commit(staticSite());
  const kinds = { cold: 'cold build', warm: 'new revision', rebuild: 'rebuild' } as const;
  const args = (service: string, revision: string, i: number) =>
    benchArgs({ service, repo: repo.url, revision, image: image('trace', 'ours-ssh'), tags: [`${i}`, 'latest'] });
  const walls: Record<string, number[]> = {};
  try {
    // Paused after each build as in rows 1-3 (the server makes a service's spare namespace after its build).
    const traceRun = async (build: string[]) => {
      const r = await run('ours-ssh', build, undefined, traced.port);
      await pause();
      return [r.ms];
    };
    await traceRun(args('trace-warm', 'main', 0));
    for (let i = 0; i < RUNS; i++) {
      walls[`trace-cold-${i}`] = await traceRun(args(`trace-cold-${i}`, 'main', i));
      const sha = repo.commit({ 'site/index.html.in': `<h1>trace ${i} @VERSION@</h1>\n` });
      walls[`trace-warm-${i}`] = await traceRun(args('trace-warm', sha, i));
      walls[`trace-rebuild-${i}`] = await traceRun(args('trace-warm', sha, i));
    }
  } finally {
    await traced.stop();
    rmSync(traced.workDir, { recursive: true, force: true });
    repo.dispose();
  }
  // Which build was which: the order of build-start lines and the order the builds were run in.
  const log = traced.log();
  const order = Object.keys(walls);
  const ids = [...log.matchAll(/ build-start build=(\w+)/g)].map((m) => m[1]).slice(1);
  type Timing = { wall_ms: number; engine_ms: number; git_ms: number; cpu_ms: number };
  const per: Record<string, Record<string, Timing[]>> = {};
  for (const m of log.matchAll(/ build-trace build=(\w+) step=(\S+) wall_ms=(\d+) engine_ms=(\d+) git_ms=(\d+) cpu_ms=(\d+)/g)) {
    const at = ids.indexOf(m[1]);
    if (at < 0) continue;
    const kind = order[at].replace(/^trace-(\w+)-\d+$/, '$1');
    ((per[kind] ??= {})[m[2]] ??= []).push({ wall_ms: +m[3], engine_ms: +m[4], git_ms: +m[5], cpu_ms: +m[6] });
  }
  const ms = (v: number[]) => `${stats(v).median.toFixed(0)}`;
  traceTable.push('| build | step | wall ms | engine ms | git ms | server CPU ms | server CPU share |', '| --- | --- | --- | --- | --- | --- | --- |');
  for (const [kind, label] of Object.entries(kinds)) {
    for (const [step, t] of Object.entries(per[kind] ?? {})) {
      const med = (k: keyof Timing) => stats(t.map((x) => x[k])).median;
      const share = step === 'total' ? `${((100 * med('cpu_ms')) / med('wall_ms')).toFixed(1)} %` : '';
      traceTable.push(`| ${label} | ${step} | ${ms(t.map((x) => x.wall_ms))} | ${ms(t.map((x) => x.engine_ms))} | ${ms(t.map((x) => x.git_ms))} | ${ms(t.map((x) => x.cpu_ms))} | ${share} |`);
    }
  }
  process.stderr.write(`${traceTable.join('\n')}\n`);
}

/** The tree of row "tree": about 470 files, 40 MB in all, in 20 folders (text, as sources are). */
function bigTree(seed: string): Files {
  const files: Files = {};
  for (let i = 0; i < 470; i++) {
    const line = `${seed} file ${i} ${'x'.repeat(60)}\n`;
    files[`src/d${i % 20}/f${i}.txt`] = line.repeat(Math.round(85_000 / line.length));
  }
  return files;
}

/**
 * Row "tree" (issue 22): a 40 MB tree of ~470 files, build.sh writes one small result and the
 * Dockerfile copies only that; a traced server (BUILDBOT_TRACE=calls). New revisions change one file
 * and delete another; the build.sh and image steps' wall time and their share of the build.
 */
async function treeRows(): Promise<void> {
  const traced = await startServer({ args: ['--max-builds', '4'], env: { BUILDBOT_TRACE: 'calls' } });
  const repo = new GitRepo(`bench-tree-${process.pid}`);
  repo.commit({
    ...bigTree('v0'),
    'build.sh': { mode: 0o755, content: `#!/bin/sh\n#build_inside_docker_image=${env.busyboxImage}\nset -e\nmkdir -p out\ncat src/d0/f0.txt | md5sum > out/sum\nls src | wc -l >> out/sum\n` },
    Dockerfile: `FROM ${env.busyboxImage}\nCOPY out/ /app/\n`,
  });
  const walls: string[] = [];
  const kinds: string[] = [];
  try {
    const go = async (kind: string, revision: string, i: number) => {
      const r = await run('ours-ssh', benchArgs({ service: 'tree', repo: repo.url, revision, image: image('tree', 'ours-ssh'), tags: [`${i}`] }), undefined, traced.port);
      if (r.code !== 0) notes.push(`Row tree: the ${kind} build ${i} exited ${r.code}.`);
      kinds.push(kind);
      walls.push(r.ms.toFixed(0));
      await pause();
    };
    await go('first', 'main', 0);
    for (let i = 1; i <= RUNS; i++) {
      const sha = repo.commit({ [`src/d1/f${i}.txt`]: `changed ${i}\n`, [`src/d2/f${i + 100}.txt`]: null });
      await go('new revision', sha, i);
      await go('rebuild', sha, i + 100);
    }
  } finally {
    await traced.stop();
    rmSync(traced.workDir, { recursive: true, force: true });
    repo.dispose();
  }
  const log = traced.log();
  const ids = [...log.matchAll(/ build-start build=(\w+)/g)].map((m) => m[1]);
  const per: Record<string, Record<string, number[]>> = {};
  for (const m of log.matchAll(/ build-trace build=(\w+) step=(\S+) wall_ms=(\d+)/g)) {
    const kind = kinds[ids.indexOf(m[1])];
    if (kind) ((per[kind] ??= {})[m[2]] ??= []).push(+m[3]);
  }
  const callsOf: Record<string, string[]> = {};
  for (const m of log.matchAll(/ build-trace-call build=(\w+) kind=engine what="([^"]+)" at_ms=(\d+) ms=(\d+)/g)) {
    if (m[1] === ids.at(-1) || m[1] === ids.at(-2)) (callsOf[kinds[ids.indexOf(m[1])]] ??= []).push(`${m[2]} at ${m[3]} ${m[4]} ms`);
  }
  for (const [kind, steps] of Object.entries(per)) {
    const med = (step: string) => (steps[step] ? stats(steps[step]).median : NaN);
    const total = med('total');
    const share = (step: string) => `${med(step).toFixed(0)} ms (${((100 * med(step)) / total).toFixed(0)} %)`;
    row([`tree. 40 MB, 470 files: ${kind} (${steps.total?.length ?? 0} runs)`, '–', '–', `total ${total.toFixed(0)} ms; build.sh ${share('build.sh')}; image ${share('image')}`, '–', '–', '–', '–', '']);
  }
  notes.push(`Row tree: client walls in order ${kinds.map((k, i) => `${k} ${walls[i]}`).join(', ')} ms. Engine calls moving the tree (last build of each kind): ${Object.entries(callsOf).map(([k, c]) => `${k}: ${c.join('; ')}`).join(' | ')}`);
}

const BENCH_TOKEN = `bench-${randomBytes(16).toString('hex')}`;

/**
 * Row 8: the same 200 MB build followed over HTTP (the real `buildbot.sh --server`, NDJSON) and
 * over SSH (the OpenSSH client), runs interleaved: time to the first output byte from spawn,
 * throughput between START and END, and our server's CPU per MB meanwhile.
 */
async function httpRow(): Promise<void> {
  const lines = Math.round((STREAM_MB * 1_000_000) / 10);
  const repo = new GitRepo(`bench-http-${process.pid}`);
  repo.commit({
    ...staticSite(),
    'build.sh': { mode: 0o755, content: `#!/bin/sh\n#build_inside_docker_image=${env.busyboxImage}\nset -e\nmkdir -p public && echo x > public/index.html\nseq -w 1 ${lines} > /tmp/out.txt\necho START\ncat /tmp/out.txt\necho END\n` },
  });
  type Who = 'ssh' | 'http';
  const result: Record<Who, { first: number[]; mbps: number[]; serverCpu: number[]; clientCpu: number[]; machineCpu: number[] }> = {
    ssh: { first: [], mbps: [], serverCpu: [], clientCpu: [], machineCpu: [] }, http: { first: [], mbps: [], serverCpu: [], clientCpu: [], machineCpu: [] },
  };
  // Each run's figures too: on a shared machine one slow run moves a median of a few.
  const perRun: string[] = [];
  const base = { PATH: process.env.PATH, HOME: process.env.HOME, ...engineEnv() };
  for (let i = 0; i < RUNS; i++) {
    for (const who of (i % 2 ? ['http', 'ssh'] : ['ssh', 'http']) as Who[]) {
      const args = benchArgs({ service: `http-${who}`, repo: repo.url, revision: 'main', image: image('http', 'ours-ssh'), tags: [`${who}${i}`] });
      const [cmd, argv, childEnv] = who === 'ssh'
        ? ['ssh', [...sshBase, '-p', String(server.port), 'root@127.0.0.1', quote(['buildbot.sh', ...args])], base]
        : [path.join(ROOT, 'bin/buildbot.sh'), ['--server', `http://127.0.0.1:${server.httpPort}`, ...args], { ...base, BUILDBOT_TOKEN: BENCH_TOKEN }];
      const r = await new Promise<{ code: number | null; first: number } & ReturnType<StreamMarks['result']>>((resolve, reject) => {
        const t0 = performance.now();
        const child = spawn(cmd, argv as string[], { env: childEnv as NodeJS.ProcessEnv, stdio: ['ignore', 'pipe', 'pipe'] });
        const marks = new StreamMarks({ server: () => processCpuMs(server.child.pid!), client: () => processCpuMs(child.pid!) });
        let first: number | undefined;
        child.stdout.on('data', (chunk: Buffer) => {
          first ??= performance.now() - t0;
          marks.feed(chunk);
        });
        child.stderr.resume();
        child.on('error', reject);
        child.on('close', (code) => resolve({ code, first: first ?? NaN, ...marks.result() }));
      });
      if (r.code !== 0 || !r.streamMs || !r.payloadBytes) {
        notes.push(`Row 8: the ${who} build of run ${i} exited ${r.code}.`);
        continue;
      }
      const mbs = r.payloadBytes / 1e6;
      result[who].first.push(r.first);
      result[who].mbps.push(mbs / (r.streamMs / 1000));
      result[who].serverCpu.push((r.streamCpuMs?.server ?? NaN) / mbs);
      result[who].clientCpu.push((r.streamCpuMs?.client ?? NaN) / mbs);
      result[who].machineCpu.push((r.streamCpuMs?.machine ?? NaN) / mbs);
      perRun.push(`${who} ${result[who].mbps.at(-1)!.toFixed(0)} MB/s (server ${result[who].serverCpu.at(-1)!.toFixed(1)}, client ${result[who].clientCpu.at(-1)!.toFixed(1)}, machine ${result[who].machineCpu.at(-1)!.toFixed(1)} ms CPU/MB)`);
    }
  }
  repo.dispose();
  const med = (v: number[]) => (v.length ? stats(v).median : NaN);
  const [s, h] = [result.ssh, result.http];
  const cell = (x: typeof s) => `${med(x.mbps).toFixed(0)} MB/s; first byte ${med(x.first).toFixed(0)} ms; server ${med(x.serverCpu).toFixed(1)} ms CPU/MB`;
  row([`8. ${STREAM_MB} MB of output followed over HTTP (buildbot.sh --server) vs SSH`, '–', '–', cell(s), `HTTP: ${cell(h)}`, '–',
    `HTTP/SSH throughput ${(med(h.mbps) / med(s.mbps)).toFixed(2)}`, 'HTTP not slower than SSH', med(h.mbps) >= med(s.mbps) ? 'met' : 'missed']);
  notes.push(`Row 8: client CPU per MB (medians): ssh ${med(s.clientCpu).toFixed(1)} ms, buildbot.sh --server ${med(h.clientCpu).toFixed(1)} ms; the whole machine's (every process and the kernel): SSH ${med(s.machineCpu).toFixed(1)} ms, HTTP ${med(h.machineCpu).toFixed(1)} ms. First byte is from spawning the client (node starts slower than ssh). Runs in order: ${perRun.join('; ')}.`);
}

/** Row 7: from "connection up" (ssh2 client ready) to the first output byte, and per-line delay of a 100 ms ticker. */
async function latencyRow(): Promise<void> {
  const repo = new GitRepo(`bench-latency-${process.pid}`);
  repo.commit({
    ...staticSite(),
    'build.sh': { mode: 0o755, content: `#!/bin/sh\n#build_inside_docker_image=${env.busyboxImage}\nmkdir -p public && echo x > public/index.html\ni=0\nwhile [ $i -lt 50 ]; do\n  echo "tick $(adjtimex | sed -n 's/^ *time.tv_sec: *//p;s/^ *time.tv_usec: *//p' | tr '\\n' ' ')"\n  usleep 100000\n  i=$((i+1))\ndone\n` },
  });
  type Who = 'original' | 'thorough' | 'ours-ssh';
  const result: Record<Who, { first: number[]; lines: number[] }> = { original: { first: [], lines: [] }, thorough: { first: [], lines: [] }, 'ours-ssh': { first: [], lines: [] } };
  for (let i = 0; i < RUNS; i++) {
    for (const who of inTurn(i, ['original', 'thorough', 'ours-ssh']) as Who[]) {
      const args = benchArgs({ service: `latency-${who}`, repo: repo.url, revision: 'main', image: image('latency', who), tags: [`${i}`] });
      const cmd = who === 'ours-ssh' ? quote(['buildbot.sh', ...args]) : scriptCommand(who, args);
      const port = who === 'ours-ssh' ? server.port : env.gitPort;
      const r = await execOverSsh2(port, cmd);
      result[who].first.push(r.firstByteMs);
      result[who].lines.push(...r.lineDelays);
    }
  }
  const [o, b, s] = (['original', 'thorough', 'ours-ssh'] as const).map((who) => result[who]);
  const f = (v: number) => `${v.toFixed(1)} ms`;
  const first = (x: { first: number[] }) => {
    const st = stats(x.first);
    return `${f(st.median)} (${f(st.min)}–${f(st.max)})`;
  };
  const median = (x: { first: number[] }) => stats(x.first).median;
  row(['7a. connection up → first output byte', first(o), first(b), first(s), '–', (median(s) / median(o)).toFixed(2), (median(s) / median(b)).toFixed(2), '< 150 ms', median(s) < 150 ? 'met' : 'missed']);
  const delays = (x: { lines: number[] }) => `${f(percentile(x.lines, 50))} / ${f(percentile(x.lines, 99))}`;
  const p99 = (x: { lines: number[] }) => percentile(x.lines, 99);
  row(['7b. line delay of build.sh output, p50 / p99', delays(o), delays(b), delays(s), '–', (p99(s) / p99(o)).toFixed(2), (p99(s) / p99(b)).toFixed(2), 'p99 < 50 ms', p99(s) < 50 ? 'met' : 'missed']);
  repo.dispose();
}

function execOverSsh2(port: number, cmd: string): Promise<{ firstByteMs: number; lineDelays: number[] }> {
  return new Promise((resolve, reject) => {
    const client = new ssh2.Client();
    client.on('error', reject);
    client.on('ready', () => {
      const ready = performance.now();
      client.exec(cmd, (err, stream) => {
        if (err) return reject(err);
        let first: number | undefined;
        let pending = '';
        const delays: number[] = [];
        stream.on('data', (d: Buffer) => {
          const nowWall = performance.timeOrigin + performance.now();
          first ??= performance.now() - ready;
          pending += d.toString();
          let nl: number;
          while ((nl = pending.indexOf('\n')) >= 0) {
            const m = /^tick (\d+) (\d+)/.exec(pending.slice(0, nl));
            if (m) delays.push(nowWall - (Number(m[1]) * 1000 + Number(m[2]) / 1000));
            pending = pending.slice(nl + 1);
          }
        });
        stream.stderr.resume();
        stream.on('close', () => {
          client.end();
          resolve({ firstByteMs: first ?? NaN, lineDelays: delays });
        });
      });
    });
    client.connect({ host: '127.0.0.1', port, username: 'root', privateKey: readFileSync(keyPath('client_ed25519')) });
  });
}

async function main(): Promise<void> {
  // The bench client key may also run the baseline on the git host's sshd, as users run it today.
  const authorized = path.join(env.dir, 'githost', 'authorized_keys');
  writeFileSync(authorized, `${readFileSync(authorized, 'utf8')}${readFileSync(keyPath('client_ed25519.pub'), 'utf8')}`);
  rmSync(localWork, { recursive: true, force: true });
  for (const dir of Object.values(scriptWork)) rmSync(dir, { recursive: true, force: true });
  // max-builds 10: row 6 compares ten builds at once with ten baseline scripts at once.
  server = await startServer({ args: ['--max-builds', '10', '--api-token', BENCH_TOKEN, ...SERVER_ARGS] });
  const only = process.env.BENCH_ROWS?.split(',');
  const rows: Array<[string, () => Promise<void>]> = [['1', buildRows], ['b2b', backToBackRow], ['go', goRows], ['4', streamRow], ['5', largeRepoRow], ['6', parallelRow], ['6b', crowdRow], ['7', latencyRow], ['http', httpRow], ['trace', traceRows], ['tree', treeRows]];
  try {
    for (const [id, fn] of rows) if (!only || only.includes(id)) await fn();
  } finally {
    await server.stop();
    for (const dir of [server.workDir, localWork, ...Object.values(scriptWork)]) rmSync(dir, { recursive: true, force: true });
  }
  const engine = execFileSync('docker', ['version', '--format', '{{.Server.Version}}'], { encoding: 'utf8' }).trim();
  const cpu = /model name\s*:\s*(.+)/.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? 'unknown CPU';
  const out = [
    `Measured ${new Date().toISOString().slice(0, 10)} on ${os.cpus().length} cores (${cpu}), ${(os.totalmem() / 2 ** 30).toFixed(0)} GiB, Docker engine ${engine}, Node.js ${process.version}; ${RUNS} runs a row (${BIG_RUNS} for rows 5–6), medians with min–max.`,
    '',
    '| row | original script (behind sshd) | thorough script (behind sshd) | ours over SSH | ours local (buildbot.sh) | ours SSH / original | ours SSH / thorough | target | |',
    '| --- | --- | --- | --- | --- | --- | --- | --- | --- |',
    ...table,
    '',
    ...notes,
    ...(traceTable.length ? ['', 'Where the time of one build goes (BUILDBOT_TRACE=1, medians):', '', ...traceTable] : []),
  ].join('\n');
  writeFileSync(path.join(ROOT, 'bench', 'last-run.md'), `${out}\n`);
  process.stdout.write(`${out}\n`);
}

await main();
