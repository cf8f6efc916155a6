import assert from 'node:assert/strict';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { EngineGrant, Engines, EngineView } from '../../src/engines/types.js';
import type { Placement } from '../../src/engines/routing.js';
import { Tokens } from '../../src/fronts/http/auth.js';
import { HttpError } from '../../src/fronts/http/body.js';
import { engineRoutes } from '../../src/fronts/http/engines.js';
import { monitorFor } from '../../src/fronts/http/monitor/monitor.js';
import { sessionCookie } from '../../src/fronts/http/monitor/session.js';
import { sendError, type HttpDeps } from '../../src/fronts/http/respond.js';
import { createMetrics } from '../../src/service/metrics.js';
import type { BuildService } from '../../src/service/service.js';
import type { History } from '../../src/store/files/history.js';

/**
 * The engines' HTTP front (issue 19) against a small fake of our own Engines interface: the
 * pool and Docker are the e2e test's (test/e2e/engines.test.ts).
 */
class FakeEngines implements Engines {
  views: EngineView[] = [
    { name: 'a', url: 'unix:///run/a.sock', state: 'up', draining: false, slots: 2, running: 1 },
    { name: 'b', url: 'tcp://10.0.0.2:2376', state: 'down', draining: false, slots: 4, running: 0 },
  ];
  placedCounts: Array<{ engine: string; placement: Placement; count: number }> = [{ engine: 'a', placement: 'preferred', count: 3 }, { engine: 'a', placement: 'failover', count: 1 }];
  acquire(): Promise<EngineGrant> {
    throw new Error('not used here');
  }
  list(): EngineView[] {
    return this.views.map((v) => ({ ...v }));
  }
  async drain(name: string) {
    const v = this.views.find((e) => e.name === name);
    if (v) v.draining = true;
    return v && { ...v };
  }
  async resume(name: string) {
    const v = this.views.find((e) => e.name === name);
    if (v) v.draining = false;
    return v && { ...v };
  }
  placed() {
    return this.placedCounts;
  }
}

const FULL = 'full-token-0123456789abcdef';
const READ = 'read-token-0123456789abcdef';
const fakeService = { observe() {}, get() { return undefined; }, isStopping: false, counts: { running: 0, queued: 0 } } as unknown as BuildService;
const fakeHistory = { list: () => [] } as unknown as History;

describe('the engines over HTTP', () => {
  const engines = new FakeEngines();
  const logged: Array<[string, Record<string, unknown>]> = [];
  const deps: HttpDeps = { service: fakeService, history: fakeHistory, tokens: new Tokens([FULL], [READ]), log: (event, fields = {}) => logged.push([event, fields]), engines };
  let server: http.Server;
  let base = '';

  before(async () => {
    server = http.createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const route = url.pathname.startsWith('/api/') ? engineRoutes(req, res, url, deps) : monitorFor(deps).handle(req, res, url);
      route.then((served) => {
        if (!served) sendError(res, new HttpError(404, 'ENOTFOUND', 'no'));
      }, (err) => sendError(res, err instanceof HttpError ? err : new HttpError(500, 'EINTERNAL', String(err))));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(() => server.close());

  const call = (path: string, init: RequestInit & { token?: string } = {}) =>
    fetch(base + path, { redirect: 'manual', ...init, headers: { ...(init.token ? { Authorization: `Bearer ${init.token}` } : {}), ...(init.headers as Record<string, string>) } });

  it('GET /api/v1/engines lists them for a read token, with exactly the fields of the issue', async () => {
    const res = await call('/api/v1/engines', { token: READ });
    assert.equal(res.status, 200);
    const body = await res.json() as { engines: EngineView[] };
    assert.deepEqual(body.engines.map((e) => Object.keys(e)), [['name', 'url', 'state', 'draining', 'slots', 'running'], ['name', 'url', 'state', 'draining', 'slots', 'running']]);
    assert.deepEqual(body.engines[1], { name: 'b', url: 'tcp://10.0.0.2:2376', state: 'down', draining: false, slots: 4, running: 0 });
    assert.equal((await call('/api/v1/engines')).status, 401);
    const one = await call('/api/v1/engines/a', { token: READ });
    assert.equal(((await one.json()) as { engine: EngineView }).engine.running, 1);
  });

  it('drain and resume need a full token and POST; an unknown engine is a 404 in the error shape', async () => {
    const get = await call('/api/v1/engines/a/drain', { token: FULL });
    assert.equal(get.status, 405);
    assert.equal(get.headers.get('allow'), 'POST');
    assert.equal(((await get.json()) as { error: { code: string } }).error.code, 'EMETHOD');
    assert.equal((await call('/api/v1/engines', { token: FULL, method: 'POST' })).status, 405);
    assert.equal((await call('/api/v1/engines/a/drain', { token: READ, method: 'POST' })).status, 403);
    assert.equal(engines.views[0].draining, false);

    const drained = await call('/api/v1/engines/a/drain', { token: FULL, method: 'POST' });
    assert.equal(drained.status, 200);
    assert.deepEqual(((await drained.json()) as { engine: EngineView }).engine, { name: 'a', url: 'unix:///run/a.sock', state: 'up', draining: true, slots: 2, running: 1 });
    assert.deepEqual(logged.at(-1), ['engine-drain', { engine: 'a', via: 'http', running: 1 }]);
    const resumed = await call('/api/v1/engines/a/resume', { token: FULL, method: 'POST' });
    assert.equal(((await resumed.json()) as { engine: EngineView }).engine.draining, false);

    const missing = await call('/api/v1/engines/zz/drain', { token: FULL, method: 'POST' });
    assert.equal(missing.status, 404);
    const error = ((await missing.json()) as { error: { code: string; message: string; field: null } }).error;
    assert.deepEqual(Object.keys(error), ['code', 'message', 'field']);
    assert.equal(error.code, 'ENOTFOUND');
    assert.match(error.message, /no engine "zz" on this server; GET \/api\/v1\/engines lists them/);
    assert.equal((await call('/api/v1/engines/zz', { token: READ })).status, 404);
  });

  it('the monitor shows the engine strip; Drain and Resume only for a full session, posted with its CSRF token', async () => {
    const readPage = await (await call('/', { token: READ })).text();
    assert.match(readPage, /id="engine-a"[^>]*data-engine="a"/);
    assert.match(readPage, /class="e-state">down</);
    assert.match(readPage, /<span class="e-running">1<\/span> of <span class="e-slots">2<\/span> running/);
    assert.doesNotMatch(readPage, /\/engines\/a\/drain/);

    const monitor = monitorFor(deps);
    const { cookie, session } = monitor.sessions.create('full', 'token-0');
    const headers = { Cookie: sessionCookie(cookie, 60, false).split(';')[0], 'Content-Type': 'application/x-www-form-urlencoded' };
    const page = await (await call('/', { headers })).text();
    assert.match(page, new RegExp(`action="/engines/a/drain" class="inline e-drain"><input type="hidden" name="csrf" value="${session.csrf}">`));
    assert.match(page, /action="\/engines\/a\/resume" class="inline e-resume" hidden>/);

    const refused = await call('/engines/a/drain', { method: 'POST', headers, body: 'csrf=wrong' });
    assert.equal(refused.status, 403);
    assert.equal(engines.views[0].draining, false);
    const foreign = await call('/engines/a/drain', { method: 'POST', headers: { ...headers, Origin: 'http://evil.example' }, body: `csrf=${session.csrf}` });
    assert.equal(foreign.status, 403);

    const ok = await call('/engines/a/drain', { method: 'POST', headers, body: `csrf=${session.csrf}` });
    assert.equal(ok.status, 303);
    assert.equal(ok.headers.get('location'), '/');
    assert.equal(engines.views[0].draining, true);
    const after = await (await call('/', { headers })).text();
    assert.match(after, /class="e-state">up, draining</);
    assert.match(after, /action="\/engines\/a\/drain" class="inline e-drain" hidden>/);
    await call('/engines/a/resume', { method: 'POST', headers, body: `csrf=${session.csrf}` });
    assert.equal(engines.views[0].draining, false);

    const readSession = monitor.sessions.create('read', 'token-1');
    const readOnly = await call('/engines/a/drain', { method: 'POST', headers: { ...headers, Cookie: sessionCookie(readSession.cookie, 60, false).split(';')[0] }, body: `csrf=${readSession.session.csrf}` });
    assert.equal(readOnly.status, 403);
    assert.equal(engines.views[0].draining, false);
    assert.equal((await call('/engines/zz/drain', { method: 'POST', headers, body: `csrf=${session.csrf}` })).status, 404);
    assert.equal((await call('/engines/a/drain', { headers })).status, 405);
  });
});

describe('the engines in the metrics', () => {
  it('up, running and slots per engine; builds placed by engine and placement, zeros included', async () => {
    const engines = new FakeEngines();
    const text = await createMetrics(fakeService, undefined, engines).text();
    const line = (re: RegExp) => assert.match(text, re);
    line(/^buildbot_engine_up\{engine="a"\} 1$/m);
    line(/^buildbot_engine_up\{engine="b"\} 0$/m);
    line(/^buildbot_engine_builds_running\{engine="a"\} 1$/m);
    line(/^buildbot_engine_slots\{engine="b"\} 4$/m);
    line(/^buildbot_builds_placed_total\{engine="a",placement="preferred"\} 3$/m);
    line(/^buildbot_builds_placed_total\{engine="a",placement="failover"\} 1$/m);
    line(/^buildbot_builds_placed_total\{engine="b",placement="spill"\} 0$/m);
    // Read at each scrape, not accumulated.
    engines.placedCounts = [{ engine: 'a', placement: 'preferred', count: 4 }];
    engines.views[1].state = 'up';
    const again = await createMetrics(fakeService, undefined, engines).text();
    assert.match(again, /^buildbot_engine_up\{engine="b"\} 1$/m);
    const metrics = createMetrics(fakeService, undefined, engines);
    await metrics.text();
    assert.match(await metrics.text(), /^buildbot_builds_placed_total\{engine="a",placement="preferred"\} 4$/m);
  });
});
