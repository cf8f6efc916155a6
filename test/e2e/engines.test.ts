import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { chromium, type Browser } from 'playwright-core';
import { rank } from '../../src/engines/routing.js';
import { buildArgs } from '../helpers/build.js';
import { docker as testDocker } from '../helpers/docker.js';
import { SecondEngine } from '../helpers/engine.js';
import { keyBase64, loginCmd, testEnv } from '../helpers/env.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { removeAll, staticSite } from '../helpers/repos.js';
import { startServer, startSsh, type ServerProcess } from '../helpers/server.js';

/**
 * Several engines (issue 19), on two dockerds of this machine: the suite's engine (`a`) and a
 * second one (test/helpers/engine.ts), reached over TLS with tls=DIR (`b`) and, in the first
 * server, also over its unix socket under a third name (`c`), so that removing an engine can be
 * seen to move only its services. Builds go through the HTTP API; each summary's engine is
 * checked against the routing rule (src/engines/routing.ts's rank) and against the daemon that
 * holds the image.
 */

const FULL = 'engines-full-token-7c1e2a9f40';
const READ = 'engines-read-token-3b8d5f0e61';
const CHROMIUM = process.env.BUILDBOT_CHROMIUM ?? '/usr/bin/chromium';
const SHOTS = process.env.BUILDBOT_SCREENSHOTS;
const A_URL = process.env.DOCKER_HOST ?? 'unix:///var/run/docker.sock';
const FINAL = ['succeeded', 'failed', 'cancelled', 'abandoned'];

/**
 * One request on a connection of its own (no keep-alive): a reused idle connection the server
 * closes at its keep-alive timeout just as the client sends on it is "fetch failed" (other side
 * closed), seen in the suite on the loaded 2 cores.
 */
function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: string } = {}): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: opts.method ?? 'GET', headers: opts.headers, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

interface Summary { id: string; status: string; service_id: string; engine?: string; exit_code: number | null; error?: { code: string; message: string } }
interface EngineView { name: string; url: string; state: string; draining: boolean; slots: number; running: number }

/** Service ids whose preferred engine (by the routing rule over `engines`, weight 1 each) gives each engine `per[name]` of them. */
function servicesFor(per: Record<string, number>, prefix = 'eng', engines = Object.keys(per)): Array<{ id: string; prefers: string }> {
  const names = engines.map((name) => ({ name, weight: 1 }));
  const want = { ...per };
  const out: Array<{ id: string; prefers: string }> = [];
  for (let i = 0; Object.values(want).some((n) => n > 0); i++) {
    const id = `${prefix}-${process.pid}-${i}`;
    const prefers = rank(id, names)[0].name;
    if (want[prefers] > 0) {
      want[prefers]--;
      out.push({ id, prefers });
    }
  }
  return out;
}

describe('several engines', () => {
  const second = new SecondEngine();
  const repoWith = suiteRepos();
  let repoUrl = '';
  let server: ServerProcess | undefined;
  let browser: Browser | undefined;
  const workDirs: string[] = [];

  const engineA = () => `a=${A_URL}`;
  const engineB = (extra = '') => `b=tcp://127.0.0.1:${second.tcpPort},tls=${second.clientCerts}${extra}`;
  const engineC = () => `c=unix://${second.socket}`;
  /** Which daemon an engine name is on: b and c are the second dockerd. */
  const daemonOf = (engine: string) => (engine === 'a' ? 'first' : 'second');

  const start = async (engines: string[], extra: string[] = [], workDir?: string) => {
    await server?.stop();
    server = await startServer({ workDir, args: ['--api-token', FULL, '--api-read-token', READ, '--max-builds', '6', ...engines.flatMap((e) => ['--engine', e]), ...extra] });
    if (!workDirs.includes(server.workDir)) workDirs.push(server.workDir);
    return server;
  };
  const base = () => `http://127.0.0.1:${server!.httpPort}`;
  const api = async <T = Record<string, any>>(p: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}, token = FULL) => {
    const { status, text } = await request(`${base()}${p}`, { ...init, headers: { ...init.headers, Authorization: `Bearer ${token}` } });
    return { status, json: (text.startsWith('{') ? JSON.parse(text) : {}) as T, text };
  };
  const submit = async (service: string, tag: string, repo = repoUrl): Promise<string> => {
    const res = await api<Summary>('/api/v1/builds', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ service_id: service, repo, revision: 'main', image: `${testEnv().registry}/${service}`, tags: [tag], repo_auth_key: keyBase64(), docker_login_cmd: loginCmd() }),
    });
    assert.equal(res.status, 202, res.text);
    return res.json.id;
  };
  const summaryOf = async (id: string) => (await api<Summary>(`/api/v1/builds/${id}`)).json;
  const finished = async (id: string, timeoutMs = 180_000): Promise<Summary> => {
    let summary: Summary | undefined;
    await eventually(async () => FINAL.includes((summary = await summaryOf(id)).status), `build ${id} to end`, timeoutMs);
    return summary!;
  };
  const engines = async () => (await api<{ engines: EngineView[] }>('/api/v1/engines', {}, READ)).json.engines;
  const metrics = async () => (await api('/metrics', {}, READ)).text;
  const metric = (text: string, line: string) => Number(new RegExp(`^${line.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
  const hasImage = async (engine: string, ref: string) => daemonOf(engine) === 'first'
    ? testDocker.getImage(ref).inspect().then(() => true, () => false)
    : second.docker(['image', 'inspect', ref], true) !== undefined;

  /** Builds every service with the tag at once; each must succeed on `expected(service)`, its image on that engine's daemon only. */
  const round = async (services: Array<{ id: string }>, tag: string, expected: (id: string) => string) => {
    const ids = await Promise.all(services.map((s) => submit(s.id, tag)));
    const summaries = await Promise.all(ids.map((id) => finished(id)));
    for (const [i, summary] of summaries.entries()) {
      assert.equal(summary.status, 'succeeded', JSON.stringify(summary.error));
      const service = services[i].id;
      assert.equal(summary.engine, expected(service), `the engine of ${service}`);
      const ref = `${testEnv().registry}/${service}:${tag}`;
      assert.ok(await hasImage(summary.engine!, ref), `${ref} is on engine ${summary.engine}`);
      assert.ok(!(await hasImage(summary.engine === 'a' ? 'b' : 'a', ref)), `${ref} is on no other daemon`);
    }
    return summaries;
  };

  before(async () => {
    await second.start();
    repoUrl = repoWith('engines', { Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo built > /built\n` }).url;
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    await second.stop();
    removeAll(...workDirs);
  });

  describe('placement by the service, drain and resume, removing an engine', () => {
    // Three engines over two daemons: a on the first, b (TLS) and c (unix socket) on the second.
    const services = servicesFor({ a: 4, b: 3, c: 3 });
    const abc = [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }, { name: 'c', weight: 1 }];
    let first: Map<string, string>;

    it('lists the engines (read token, no credentials) and exports them as metrics', async () => {
      await start([engineA(), engineB(), engineC()]);
      const list = await engines();
      assert.deepEqual(list.map((e) => [e.name, e.state, e.draining, e.running]), [['a', 'up', false, 0], ['b', 'up', false, 0], ['c', 'up', false, 0]]);
      assert.equal(list[1].url, `tcp://127.0.0.1:${second.tcpPort}`);
      assert.equal(list[2].url, `unix://${second.socket}`);
      assert.ok(list.every((e) => e.slots >= 1));
      assert.equal((await api('/api/v1/engines', {}, 'not-a-token')).status, 401);
      assert.equal((await api('/api/v1/engines', { method: 'DELETE' })).status, 405);
      const missing = await api<{ error: { code: string; message: string; field: null } }>('/api/v1/engines/nope/drain', { method: 'POST' });
      assert.equal(missing.status, 404);
      assert.equal(missing.json.error.code, 'ENOTFOUND');
      const text = await metrics();
      for (const name of ['a', 'b', 'c']) {
        assert.equal(metric(text, `buildbot_engine_up{engine="${name}"}`), 1);
        assert.equal(metric(text, `buildbot_engine_builds_running{engine="${name}"}`), 0);
        assert.ok(metric(text, `buildbot_engine_slots{engine="${name}"}`) >= 1);
        assert.equal(metric(text, `buildbot_builds_placed_total{engine="${name}",placement="preferred"}`), 0);
      }
    });

    it('builds each of ten services on the engine its id hashes to, all three engines used', async () => {
      const summaries = await round(services, 'r1', (id) => rank(id, abc)[0].name);
      first = new Map(summaries.map((s) => [s.service_id, s.engine!]));
      assert.deepEqual(new Set(first.values()), new Set(['a', 'b', 'c']));
      // The history and the monitor's list show it too.
      const listed = (await api<{ builds: Summary[] }>(`/api/v1/builds?service_id=${services[0].id}`, {}, READ)).json.builds;
      assert.equal(listed[0].engine, first.get(services[0].id));
      const page = (await request(`${base()}/?service_id=${services[0].id}`, { headers: { Authorization: `Bearer ${READ}` } })).text;
      assert.match(page, new RegExp(`on <span class="engine-name">${first.get(services[0].id)}</span>`));
      const buildPage = (await request(`${base()}/builds/${listed[0].id}`, { headers: { Authorization: `Bearer ${READ}` } })).text;
      assert.match(buildPage, new RegExp(`<dt>Engine</dt><dd><span class="engine-name">${first.get(services[0].id)}</span>`));
      const text = await metrics();
      for (const name of ['a', 'b', 'c']) {
        assert.equal(metric(text, `buildbot_builds_placed_total{engine="${name}",placement="preferred"}`), services.filter((s) => s.prefers === name).length);
      }
    });

    it('drains an engine over the API (full token); the drain survives a restart, its services go elsewhere until it is resumed', async () => {
      assert.equal((await api('/api/v1/engines/c/drain', { method: 'POST' }, READ)).status, 403);
      const drained = await api<{ engine: EngineView }>('/api/v1/engines/c/drain', { method: 'POST' });
      assert.equal(drained.status, 200);
      assert.equal(drained.json.engine.draining, true);
      assert.match(readFileSync(path.join(server!.workDir, '.engines.json'), 'utf8'), /"c"/);
      // The same server again, same work dir: placement is the same for a and b, c is still drained.
      await start([engineA(), engineB(), engineC()], [], server!.workDir);
      assert.deepEqual((await engines()).map((e) => [e.name, e.draining]), [['a', false], ['b', false], ['c', true]]);
      const second = (id: string) => rank(id, abc)[1].name;
      await round(services, 'r2', (id) => (first.get(id) === 'c' ? second(id) : first.get(id)!));
      const text = await metrics();
      const cServices = services.filter((s) => s.prefers === 'c');
      for (const name of ['a', 'b']) {
        assert.equal(metric(text, `buildbot_builds_placed_total{engine="${name}",placement="failover"}`), cServices.filter((s) => second(s.id) === name).length, `failovers to ${name}`);
      }
      const resumed = await api<{ engine: EngineView }>('/api/v1/engines/c/resume', { method: 'POST' });
      assert.equal(resumed.json.engine.draining, false);
      await round(cServices, 'r3', () => 'c');
    });

    it('removing an engine from the flags moves only its services', async () => {
      await start([engineA(), engineB()], [], server!.workDir);
      assert.deepEqual((await engines()).map((e) => e.name), ['a', 'b']);
      await round(services, 'r4', (id) => (first.get(id) === 'c' ? rank(id, abc.slice(0, 2))[0].name : first.get(id)!));
    });

    it('the monitor shows the engines; a full-access session drains and resumes one, a read-only one sees no button', async () => {
      browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
      const signIn = async (token: string) => {
        const context = await browser!.newContext({ viewport: { width: 1280, height: 800 } });
        const page = await context.newPage();
        const errors: string[] = [];
        page.on('pageerror', (err) => errors.push(err.message));
        page.on('console', (message) => {
          if (message.type() === 'error') errors.push(message.text());
        });
        await page.goto(`${base()}/signin`);
        await page.fill('#token', token);
        await page.press('#token', 'Enter');
        await page.waitForURL(`${base()}/`);
        return { context, page, errors };
      };
      const full = await signIn(FULL);
      const { page } = full;
      assert.equal(await page.textContent('#engine-a .e-state'), 'up');
      assert.equal(await page.textContent('#engine-b .e-state'), 'up');
      assert.match(await page.textContent('#engine-b .e-load') ?? '', /^0 of \d+ running$/);
      assert.equal(await page.isVisible('#engine-b .e-resume button'), false);
      await Promise.all([page.waitForURL(`${base()}/`), page.click('#engine-b .e-drain button')]);
      assert.equal(await page.textContent('#engine-b .e-state'), 'up, draining');
      assert.equal(await page.isVisible('#engine-b .e-resume button'), true);
      assert.equal((await engines()).find((e) => e.name === 'b')!.draining, true);
      if (SHOTS) {
        mkdirSync(SHOTS, { recursive: true });
        await page.screenshot({ path: path.join(SHOTS, 'engines-front.png'), fullPage: true });
      }
      // Another page sees it live, without a reload (the list's event stream).
      const reader = await signIn(READ);
      assert.equal(await reader.page.$('#engines form'), null, 'a read-only session has no Drain or Resume');
      assert.equal(await reader.page.textContent('#engine-b .e-state'), 'up, draining');
      await Promise.all([page.waitForURL(`${base()}/`), page.click('#engine-b .e-resume button')]);
      await reader.page.waitForFunction(() => (globalThis as any).document.querySelector('#engine-b .e-state').textContent === 'up', undefined, { timeout: 10_000 });
      assert.equal((await engines()).find((e) => e.name === 'b')!.draining, false);
      assert.deepEqual([...full.errors, ...reader.errors], []);
      await full.context.close();
      await reader.context.close();
    });
  });

  describe('slots, spilling and an engine lost during a build', () => {
    const slow = (id: string, seconds: number) => ({ id, seconds });
    const ab = [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }];
    before(async () => {
      await start([`${engineA()},slots=1`, engineB(',slots=1')], ['--affinity-wait', '1']);
    });

    it('holds one build per engine with slots=1; with --affinity-wait 1 a build whose engine is busy spills to the free one', async () => {
      const picked = servicesFor({ a: 2, b: 1 }, 'slot');
      const [onA, waiting] = picked.filter((s) => s.prefers === 'a').map((s) => s.id);
      const onB = picked.find((s) => s.prefers === 'b')!.id;
      assert.equal(rank(waiting, ab)[0].name, 'a');
      assert.equal(rank(onB, ab)[0].name, 'b');
      const long = await submitSlow(slow(onA, 40));
      const short = await submitSlow(slow(onB, 10));
      await eventually(async () => (await summaryOf(long)).status === 'running' && (await summaryOf(short)).status === 'running', 'two builds running', 60_000);
      const third = await submit(waiting, 'spill');
      // Two run, one waits: each engine has its one slot taken.
      await new Promise((resolve) => setTimeout(resolve, 2500));
      assert.equal((await summaryOf(third)).status, 'queued');
      assert.deepEqual((await engines()).map((e) => [e.name, e.slots, e.running]), [['a', 1, 1], ['b', 1, 1]]);
      assert.equal(metric(await metrics(), 'buildbot_engine_builds_running{engine="a"}'), 1);
      // b frees first: the waiting build, past its affinity wait, takes it.
      const spilled = await finished(third, 120_000);
      assert.equal(spilled.status, 'succeeded', JSON.stringify(spilled.error));
      assert.equal(spilled.engine, 'b');
      assert.equal((await summaryOf(long)).status, 'running', 'it did not wait for its own engine');
      const text = await metrics();
      const placed = text.split('\n').filter((l) => l.startsWith('buildbot_builds_placed_total{')).join('\n');
      assert.equal(metric(text, 'buildbot_builds_placed_total{engine="b",placement="spill"}'), 1, placed);
      assert.equal(metric(text, 'buildbot_builds_placed_total{engine="a",placement="preferred"}'), 1);
      assert.equal(metric(text, 'buildbot_builds_placed_total{engine="b",placement="preferred"}'), 1);
      assert.equal((await api(`/api/v1/builds/${long}/cancel`, { method: 'POST' })).status, 202);
      await finished(long);
    });

    it('an engine stopped during build.sh: one error line naming it, shown down, its services built on the other, nothing left once it is back', async () => {
      const [service] = servicesFor({ b: 1 }, 'lost', ['a', 'b']).map((s) => s.id);
      assert.equal(rank(service, ab)[0].name, 'b');
      const repo = repoWith('lost', staticSite({ buildExtra: 'echo "slow build started"; sleep 120' }));
      // Over SSH, as a CI job would: the client's stderr is what its log shows.
      const client = startSsh(server!, [quote(['buildbot.sh', ...buildArgs({ service, repo: repo.url, revision: 'main', image: service })])]);
      await client.waitFor(/slow build started/, 120_000);
      await second.halt();
      const res = await client.done;
      const errorLines = res.stderr.split('\n').filter((l) => l.startsWith('error:'));
      assert.equal(errorLines.length, 1, res.stderr);
      assert.match(errorLines[0], /^error: the Docker engine "b" (went away|stopped) while running build\.sh/);
      assert.equal(res.code, 1);
      await eventually(async () => (await engines()).find((e) => e.name === 'b')!.state === 'down', 'engine b shown down', 15_000);
      assert.equal(metric(await metrics(), 'buildbot_engine_up{engine="b"}'), 0);
      // No new build goes there: the service builds on a meanwhile.
      const failover = await finished(await submit(service, 'meanwhile'));
      assert.equal(failover.status, 'succeeded', JSON.stringify(failover.error));
      assert.equal(failover.engine, 'a');
      assert.ok(metric(await metrics(), 'buildbot_builds_placed_total{engine="a",placement="failover"}') >= 1);
      // Back: shown up, and the cut build's containers are swept off it.
      await second.restart();
      await eventually(async () => (await engines()).find((e) => e.name === 'b')!.state === 'up', 'engine b shown up again', 20_000);
      await eventually(() => (second.docker(['ps', '-aq', '--filter', 'label=io.buildbot.build']) ?? '').trim() === '', 'nothing of the cut build left on b', 30_000);
      const back = await finished(await submit(service, 'back'));
      assert.equal(back.engine, 'b');
    });
  });

  /** A build whose build.sh sleeps `seconds`, from a repository of its own. */
  async function submitSlow(s: { id: string; seconds: number }): Promise<string> {
    const repo = repoWith(`slow-${s.seconds}`, staticSite({ buildExtra: `echo "slow build started"; sleep ${s.seconds}` }));
    return submit(s.id, 'slow', repo.url);
  }
});
