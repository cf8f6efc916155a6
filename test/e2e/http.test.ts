import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { keyBase64, loginCmd, testEnv } from '../helpers/env.js';
import { assertNoSecrets, buildArgs, headers, resultMeta, unique } from '../helpers/build.js';
import { BUILDBOT_SH, spawnRunning } from '../helpers/cli.js';
import { engineEnv } from '../helpers/env.js';
import { buildContainers, buildContainersOf } from '../helpers/docker.js';
import { registryTags } from '../helpers/registry.js';
import { removeAll, staticSite } from '../helpers/repos.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { ssh, startServer, type ServerProcess } from '../helpers/server.js';

const FULL = 'full-token-7f3a9c2e4b1d8f60';
const READ = 'read-token-0c5e8a7b3f2d1e94';

interface Rec { seq: number; time: string; type: string; stream?: string; data?: string; name?: string; phase?: string; duration?: number; code?: number | null; status?: string; place?: number }

/** Every response body the tests saw: none may hold a secret. */
const seen: string[] = [];

describe('the HTTP API', () => {
  let server: ServerProcess;
  const repoWith = suiteRepos();
  const base = () => `http://127.0.0.1:${server.httpPort}`;
  const call = async (p: string, init: RequestInit & { token?: string | null } = {}) => {
    const token = init.token === undefined ? FULL : init.token;
    const headers = new Headers(init.headers);
    if (token) headers.set('Authorization', `Bearer ${token}`);
    const res = await fetch(`${base()}${p}`, { ...init, headers });
    const text = await res.text();
    seen.push(text);
    return { status: res.status, headers: res.headers, text, json: () => JSON.parse(text) as Record<string, any> };
  };
  const body = (fields: Record<string, unknown>) => ({ method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(fields) });
  const request = (service: string, repo: string, extra: Record<string, unknown> = {}) => ({
    service_id: service, repo, revision: 'main', image: `${testEnv().registry}/${service}`, tags: ['1.0.0'],
    repo_auth_key: keyBase64(), docker_login_cmd: loginCmd(), ...extra,
  });
  const waitForStatus = (id: string, status: string) => eventually(async () => (await call(`/api/v1/builds/${id}`, { token: READ })).json().status === status, `build ${id} to be ${status}`, 60_000);

  before(async () => {
    server = await startServer({ args: ['--max-builds', '2', '--api-token', FULL, '--api-read-token', READ] });
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('answers every refusal with its status code and {"error":{code,message,field}}', async () => {
    assert.equal((await call('/healthz', { token: null })).status, 200);

    const anonymous = await call('/api/v1/builds', { token: null });
    assert.equal(anonymous.status, 401);
    assert.equal(anonymous.headers.get('www-authenticate'), 'Bearer realm="buildbot"');
    assert.equal(anonymous.json().error.code, 'EUNAUTHORIZED');
    const wrong = await call('/api/v1/builds', { token: 'not-the-token-at-all-0000' });
    assert.equal(wrong.status, 401);
    assert.match(wrong.headers.get('www-authenticate')!, /error="invalid_token"/);
    assert.equal((await call('/metrics', { token: null })).status, 401);
    const noBearer = await call('/api/v1/builds', { token: null, headers: { Authorization: FULL } });
    assert.equal(noBearer.status, 401);
    assert.match(noBearer.json().error.message, /the Authorization header must read "Bearer TOKEN"/);
    assert.ok(!noBearer.text.includes(FULL), 'the token is not echoed');
    const hyphen = await call('/api/v1/builds', body({ ...request('x', 'ssh://h/r'), 'service-id': 'x' }));
    assert.equal(hyphen.status, 400);
    assert.equal(hyphen.json().error.message, 'unknown field "service-id" (did you mean "service_id"?)');

    const readOnly = await call('/api/v1/builds', { ...body(request('x', 'ssh://h/r')), token: READ });
    assert.equal(readOnly.status, 403);
    assert.equal(readOnly.json().error.code, 'EFORBIDDEN');
    assert.equal((await call('/api/v1/builds', { token: READ })).status, 200);

    const notJson = await call('/api/v1/builds', { method: 'POST', headers: { 'Content-Type': 'text/plain' }, body: '{}' });
    assert.equal(notJson.status, 415);
    const huge = await call('/api/v1/builds', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify({ service_id: 'x'.repeat(400_000) }) });
    assert.equal(huge.status, 413);
    const malformed = await call('/api/v1/builds', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"service_id":' });
    assert.equal(malformed.status, 400);
    assert.equal(malformed.json().error.code, 'EBADJSON');

    const missing = await call('/api/v1/builds', body({ service_id: 'x' }));
    assert.equal(missing.status, 400);
    // Every missing field at once; `field` names the first.
    assert.deepEqual(missing.json().error, { code: 'EUSAGE', message: 'missing "repo", "revision", "image" and "tags"', field: 'repo' });
    const unknown = await call('/api/v1/builds', body({ ...request('x', 'ssh://h/r'), colour: 'blue' }));
    assert.equal(unknown.json().error.field, 'colour');
    const badTag = await call('/api/v1/builds', body({ ...request('x', 'ssh://h/r'), tags: ['-bad'] }));
    assert.equal(badTag.status, 400);
    assert.equal(badTag.json().error.field, 'tags');
    assert.match(badTag.json().error.message, /^"tags" "-bad" is not a valid tag/);
    // A URL with credentials that fails validation: the error names the field, not the password.
    const secretUrl = await call('/api/v1/builds', body({ ...request('x', 'https://build:Sup3rS3cretPw@[git.example/r') }));
    assert.equal(secretUrl.status, 400);
    assert.equal(secretUrl.json().error.field, 'repo');
    assert.doesNotMatch(secretUrl.text, /Sup3rS3cretPw/);

    assert.equal((await call('/api/v1/builds/0000000000000000z')).status, 404);
    assert.equal((await call('/api/v1/nothing')).status, 404);
    const method = await call('/api/v1/builds', { method: 'DELETE' });
    assert.equal(method.status, 405);
    assert.equal(method.headers.get('allow'), 'GET, POST');
    assert.equal((await call('/api/v1/builds?status=done')).json().error.field, 'status');
    assert.equal((await call('/api/v1/builds?limit=0')).json().error.field, 'limit');
  });

  it('runs a build: 202 with Location, then its status, records, events and log', async () => {
    const repo = repoWith('http-site', staticSite());
    const service = unique('http-site');
    // Every change of every build, as a page that lists builds watches them.
    const watching = new AbortController();
    const watch = await fetch(`${base()}/api/v1/events`, { headers: { Authorization: `Bearer ${READ}` }, signal: watching.signal });
    assert.equal(watch.headers.get('content-type'), 'application/x-ndjson');
    const res = await call('/api/v1/builds', body(request(service, repo.url, { tags: ['1.0.0', 'latest'] })));
    assert.equal(res.status, 202);
    const { id, status } = res.json();
    assert.equal(res.headers.get('location'), `/api/v1/builds/${id}`);
    assert.ok(status === 'queued' || status === 'running');
    const changes: Array<{ status: string; steps: unknown[] }> = [];
    let pending = '';
    const decoder = new TextDecoder();
    for await (const chunk of watch.body as unknown as AsyncIterable<Uint8Array>) {
      pending += decoder.decode(chunk, { stream: true });
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines.filter(Boolean)) {
        const event = JSON.parse(line) as { type: string; build: { id: string; status: string; steps: unknown[] } };
        if (event.type === 'build' && event.build.id === id) changes.push(event.build);
      }
      if (changes.at(-1)?.status === 'succeeded') break;
    }
    watching.abort();
    const statuses = changes.map((c) => c.status).filter((s, i, all) => s !== all[i - 1]);
    assert.deepEqual(statuses, ['queued', 'running', 'succeeded']);
    assert.equal(changes.at(-1)!.steps.length, 8);
    await waitForStatus(id, 'succeeded');

    const build = (await call(`/api/v1/builds/${id}`, { token: READ })).json();
    assert.equal(build.exit_code, 0);
    assert.equal(build.source, 'http');
    assert.equal(build.service_id, service);
    assert.deepEqual(build.tags, ['1.0.0', 'latest']);
    assert.match(build.digest, /^sha256:[0-9a-f]{64}$/);
    assert.deepEqual(build.steps.map((s: { name: string }) => s.name), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done']);
    assert.ok(build.steps.every((s: { duration: number; ok: boolean }) => s.duration >= 0 && s.ok));
    assert.ok(build.started_at && build.finished_at && build.created_at);
    assert.deepEqual(await registryTags(service), ['1.0.0', 'latest']);

    const events = await call(`/api/v1/builds/${id}/events`, { token: READ, headers: { Accept: 'application/x-ndjson' } });
    assert.equal(events.headers.get('content-type'), 'application/x-ndjson');
    const recs = records(events.text);
    assert.deepEqual(recs.map((r) => r.seq), recs.map((_, i) => i + 1), 'seq is 1, 2, 3 …');
    assert.deepEqual(recs.at(-1), { ...recs.at(-1), type: 'exit', code: 0, status: 'succeeded' });
    const steps = recs.filter((r) => r.type === 'step');
    assert.deepEqual(steps.slice(0, 2).map((r) => [r.name, r.phase]), [['login', 'start'], ['login', 'end']]);
    assert.ok(steps.filter((r) => r.phase === 'end').every((r) => typeof r.duration === 'number'));
    const stdout = recs.filter((r) => r.type === 'output' && r.stream === 'stdout').map((r) => r.data).join('');
    assert.deepEqual(headers(stdout), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done']);
    assert.equal(resultMeta(stdout).service_id, service);

    const after = await call(`/api/v1/builds/${id}/events?after=5`, { token: READ });
    assert.equal(records(after.text)[0].seq, 6);

    const log = await call(`/api/v1/builds/${id}/log`, { token: READ });
    assert.equal(log.headers.get('content-type'), 'text/plain; charset=utf-8');
    assert.equal(log.text, recs.filter((r) => r.type === 'output').map((r) => r.data).join(''), 'the log is the output records joined');
    const errLog = await call(`/api/v1/builds/${id}/log?stream=stderr&download=1`, { token: READ });
    assert.match(errLog.text, /^a warning on stderr$/m);
    assert.doesNotMatch(errLog.text, /# login/);
    assert.match(errLog.headers.get('content-disposition')!, new RegExp(`^attachment; filename="buildbot-${service}-${id}-stderr\\.log"$`));

    // SSE: id: <seq>, resumable with Last-Event-ID, unbuffered by proxies.
    const sse = await call(`/api/v1/builds/${id}/events`, { token: READ, headers: { Accept: 'text/event-stream', 'Last-Event-ID': String(recs.length - 2) } });
    assert.equal(sse.headers.get('content-type'), 'text/event-stream');
    assert.equal(sse.headers.get('x-accel-buffering'), 'no');
    const ids = [...sse.text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(ids, [recs.length - 1, recs.length]);
    assert.match(sse.text, /^data: \{"seq":\d+,.*"type":"exit","code":0,"status":"succeeded"\}$/m);
  });

  it('follows a build as NDJSON with ?follow=1 until its exit record, build.sh\'s code passed through', async () => {
    const repo = repoWith('http-fail', staticSite({ buildExtra: 'echo "about to fail"; exit 3' }));
    const service = unique('http-fail');
    const res = await call('/api/v1/builds?follow=1', body(request(service, repo.url)));
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'application/x-ndjson');
    assert.match(res.headers.get('location')!, /^\/api\/v1\/builds\/\w+$/);
    const recs = records(res.text);
    assert.match(recs.filter((r) => r.type === 'output').map((r) => r.data).join(''), /about to fail\n/);
    assert.match(recs.filter((r) => r.stream === 'stderr').map((r) => r.data).join(''), /^error: build\.sh exited with code 3/m);
    assert.deepEqual(recs.at(-1), { ...recs.at(-1), type: 'exit', code: 3, status: 'failed' });
    // Accept: application/x-ndjson follows too.
    const accept = await call('/api/v1/builds', { ...body(request(service, repo.url)), headers: { 'Content-Type': 'application/json', Accept: 'application/x-ndjson' } });
    assert.equal(accept.status, 200);
    assert.equal(records(accept.text).at(-1)!.code, 3);
  });

  it('a dropped follow does not cancel; POST …/cancel does: exit 130, cancelled, containers removed', async () => {
    const repo = repoWith('http-cancel', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
    const service = unique('http-cancel');
    const dropped = new AbortController();
    const res = await fetch(`${base()}/api/v1/builds?follow=1`, { ...body(request(service, repo.url)), headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${FULL}` }, signal: dropped.signal });
    const id = res.headers.get('x-build-id')!;
    let text = '';
    const reader = res.body!.getReader();
    while (!text.includes('long build started')) text += new TextDecoder().decode((await reader.read()).value);
    dropped.abort();
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await call(`/api/v1/builds/${id}`)).json().status, 'running', 'the build goes on without its follower');
    assert.equal((await buildContainersOf('builder')).length, 1);

    assert.equal((await call(`/api/v1/builds/${id}/cancel`, { method: 'POST', token: READ })).status, 403);
    const cancel = await call(`/api/v1/builds/${id}/cancel`, { method: 'POST' });
    assert.equal(cancel.status, 202);
    const events = records((await call(`/api/v1/builds/${id}/events`)).text);
    assert.deepEqual(events.at(-1), { ...events.at(-1), type: 'exit', code: 130, status: 'cancelled' });
    assert.match(events.filter((r) => r.stream === 'stderr').map((r) => r.data).join(''), /^error: build cancelled/m);
    const build = (await call(`/api/v1/builds/${id}`)).json();
    assert.equal(build.status, 'cancelled');
    assert.equal(build.exit_code, 130);
    await eventually(async () => (await buildContainers()).length === 0, 'the builder container to be removed');
    assert.deepEqual(await registryTags(service), []);
    assert.equal((await call(`/api/v1/builds/${id}/cancel`, { method: 'POST' })).status, 409);
  });

  it('lists HTTP and SSH builds, running first, then newest first, with filters', async () => {
    const repo = repoWith('http-list', staticSite());
    const service = unique('http-list');
    const viaSsh = await ssh(server, [quote(['buildbot.sh', ...buildArgs({ service, repo: repo.url, revision: 'main', image: service })])]);
    assert.equal(viaSsh.code, 0, viaSsh.stderr);
    const slow = repoWith('http-list-slow', staticSite({ buildExtra: 'echo "slow build started"; sleep 60' }));
    const slowService = unique('http-list-slow');
    const running = (await call('/api/v1/builds', body(request(slowService, slow.url)))).json();
    await waitForStatus(running.id, 'running');

    const all = (await call('/api/v1/builds?limit=1000', { token: READ })).json().builds as Array<Record<string, string>>;
    assert.equal(all[0].id, running.id, 'the running build comes first');
    const finished = all.filter((b) => b.status !== 'running' && b.status !== 'queued');
    assert.deepEqual(finished.map((b) => b.created_at), [...finished.map((b) => b.created_at)].sort().reverse(), 'then newest first');
    const mine = (await call(`/api/v1/builds?service_id=${service}`, { token: READ })).json().builds as Array<Record<string, string>>;
    assert.equal(mine.length, 1);
    assert.equal(mine[0].source, 'ssh');
    assert.equal(mine[0].status, 'succeeded');
    const failed = (await call('/api/v1/builds?status=failed&limit=1', { token: READ })).json().builds as Array<Record<string, string>>;
    assert.ok(failed.length === 1 && failed[0].status === 'failed');
    await call(`/api/v1/builds/${running.id}/cancel`, { method: 'POST' });
    await waitForStatus(running.id, 'cancelled');
  });

  it('serves Prometheus metrics to a read token, without a service id in any label', async () => {
    const res = await call('/metrics', { token: READ });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    assert.match(res.text, /^buildbot_builds_total\{result="succeeded"\} [1-9]\d*$/m);
    assert.match(res.text, /^buildbot_builds_total\{result="failed"\} [1-9]\d*$/m);
    assert.match(res.text, /^buildbot_builds_total\{result="cancelled"\} [1-9]\d*$/m);
    assert.match(res.text, /^buildbot_build_duration_seconds_count [1-9]\d*$/m);
    assert.match(res.text, /^buildbot_step_duration_seconds_bucket\{le="\+Inf",step="build\.sh"\} [1-9]\d*$/m);
    assert.match(res.text, /^buildbot_output_bytes_total\{stream="stdout"\} [1-9]\d*$/m);
    assert.match(res.text, /^buildbot_builds_running 0$/m);
    assert.match(res.text, /^buildbot_builds_queued 0$/m);
    assert.doesNotMatch(res.text, /service_id|service=/);
  });

  it('keeps no secret in any response, log line or stored file', () => {
    const stored = readdirSync(path.join(server.workDir, '.history')).map((f) => readFileSync(path.join(server.workDir, '.history', f), 'utf8'));
    assert.ok(stored.length >= 10);
    assertNoSecrets(...seen, ...stored, server.log());
    for (const text of [...seen, ...stored, server.log()]) assert.ok(!text.includes(FULL) && !text.includes(READ), 'no API token anywhere');
  });
});

describe('buildbot.sh --server', () => {
  let server: ServerProcess;
  const repoWith = suiteRepos();
  const remote = (args: string[], env: Record<string, string> = {}) =>
    spawnRunning(BUILDBOT_SH, args, { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...engineEnv(), BUILDBOT_TOKEN: FULL, ...env } });
  const url = () => `http://127.0.0.1:${server.httpPort}`;

  before(async () => {
    server = await startServer({ args: ['--api-token', FULL, '--api-read-token', READ] });
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('runs the build on the server with the same flags: stdout and stderr apart, the build\'s exit code', async () => {
    const repo = repoWith('remote-site', staticSite());
    const service = unique('remote-site');
    const res = await remote(['--server', url(), ...buildArgs({ service, repo: repo.url, revision: 'main', image: service })]).done;
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(headers(res.stdout), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done']);
    assert.match(res.stderr, /^a warning on stderr$/m);
    assert.doesNotMatch(res.stdout, /a warning on stderr/);
    assert.equal(resultMeta(res.stdout).service_id, service);
    assert.deepEqual(await registryTags(service), ['1.0.0']);
    assertNoSecrets(res.stdout, res.stderr);

    const failing = repoWith('remote-fail', staticSite({ buildExtra: 'exit 3' }));
    const failed = await remote(['--server', url(), ...buildArgs({ service, repo: failing.url, revision: 'main', image: service })]).done;
    assert.equal(failed.code, 3);
    assert.match(failed.stderr, /^error: build\.sh exited with code 3/m);
  });

  it('exits 2 for a request the server refuses, naming the flag; 255 when unreachable or the token is refused', async () => {
    const usage = await remote(['--server', url(), '--service_id', 'x', '--repo', 'ssh://h/r', '--revision', 'main', '--image', 'x', '--tag', '-bad']).done;
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^error: --tag "-bad" is not a valid tag/m);

    const args = buildArgs({ service: 'x', repo: 'ssh://h/r', revision: 'main', image: 'x' });
    const badToken = await remote(['--server', url(), ...args], { BUILDBOT_TOKEN: 'wrong-token-wrong-token' }).done;
    assert.equal(badToken.code, 255);
    assert.match(badToken.stderr, /^error: the token is not valid for this server; set BUILDBOT_TOKEN/m);
    const noToken = await remote(['--server', url(), ...args], { BUILDBOT_TOKEN: '' }).done;
    assert.equal(noToken.code, 255);
    assert.match(noToken.stderr, /^error: BUILDBOT_TOKEN is not set; export the API token/m);
    const localOnly = await remote(['--server', url(), ...args, '--stall-timeout', '5']).done;
    assert.equal(localOnly.code, 2);
    assert.match(localOnly.stderr, /^error: --stall-timeout is a setting of the server \(buildbot-server --stall-timeout\), not of a request/m);

    const closed = net.createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as net.AddressInfo).port;
    await new Promise((r) => closed.close(r));
    const unreachable = await remote(['--server', `http://127.0.0.1:${port}`, ...args]).done;
    assert.equal(unreachable.code, 255);
    assert.match(unreachable.stderr, /^error: cannot reach the server at http:\/\/127\.0\.0\.1:\d+: ECONNREFUSED/m);
    assertNoSecrets(usage.stderr, badToken.stderr, unreachable.stderr);
  });

  it('resumes after the last record when the stream drops, and prints nothing twice', async () => {
    const repo = repoWith('remote-resume', staticSite({ buildExtra: 'echo "part one"; sleep 3; echo "part two"' }));
    const service = unique('remote-resume');
    // A relay that cuts the first connection once "part one" has passed through it.
    let connections = 0;
    const relay = net.createServer((client) => {
      const first = ++connections === 1;
      const upstream = net.connect(server.httpPort, '127.0.0.1');
      client.pipe(upstream);
      upstream.on('data', (chunk: Buffer) => {
        client.write(chunk);
        if (first && chunk.includes('part one')) setTimeout(() => {
          client.destroy();
          upstream.destroy();
        }, 100);
      });
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
      client.on('close', () => upstream.destroy());
    });
    await new Promise<void>((r) => relay.listen(0, '127.0.0.1', r));
    try {
      const port = (relay.address() as net.AddressInfo).port;
      const res = await remote(['--server', `http://127.0.0.1:${port}`, ...buildArgs({ service, repo: repo.url, revision: 'main', image: service })]).done;
      assert.equal(res.code, 0, res.stderr);
      assert.ok(connections >= 2, 'the client connected again');
      assert.equal(res.stdout.match(/^part one$/gm)?.length, 1);
      assert.equal(res.stdout.match(/^part two$/gm)?.length, 1);
      assert.deepEqual(headers(res.stdout), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done']);
    } finally {
      relay.close();
    }
  });

  it('Ctrl-C cancels the build on the server before it exits', async () => {
    const repo = repoWith('remote-cancel', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
    const service = unique('remote-cancel');
    const run = remote(['--server', url(), ...buildArgs({ service, repo: repo.url, revision: 'main', image: service })]);
    await run.waitFor(/long build started/);
    run.child.kill('SIGINT');
    const res = await run.done;
    assert.equal(res.code, 130);
    assert.match(res.stderr, /^error: build cancelled/m);
    assert.deepEqual(await buildContainers(), []);
    const list = await fetch(`${url()}/api/v1/builds?service_id=${service}`, { headers: { Authorization: `Bearer ${READ}` } });
    const [build] = ((await list.json()) as { builds: Array<Record<string, unknown>> }).builds;
    assert.equal(build.status, 'cancelled');
    assert.equal(build.exit_code, 130);
  });
});

describe('build history across restarts', () => {
  const repoWith = suiteRepos();

  it('keeps builds and logs across a restart; a build running when the server died is abandoned', async () => {
    const first = await startServer({ args: ['--api-token', FULL, '--history-per-service', '2'] });
    const auth = { Authorization: `Bearer ${FULL}` };
    const repo = repoWith('history', staticSite());
    const service = unique('history');
    const ids: string[] = [];
    for (let i = 0; i < 3; i++) {
      const res = await fetch(`http://127.0.0.1:${first.httpPort}/api/v1/builds?follow=1`, {
        method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ service_id: service, repo: repo.url, revision: 'main', image: `${testEnv().registry}/${service}`, tags: [`${i}`], repo_auth_key: keyBase64(), docker_login_cmd: loginCmd() }),
      });
      ids.push(res.headers.get('x-build-id')!);
      assert.match(await res.text(), /"type":"exit","code":0,"status":"succeeded"/);
    }
    const slow = repoWith('history-slow', staticSite({ buildExtra: 'echo "build underway"; sleep 120' }));
    const slowService = unique('history-slow');
    const started = await fetch(`http://127.0.0.1:${first.httpPort}/api/v1/builds`, {
      method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
      body: JSON.stringify({ service_id: slowService, repo: slow.url, revision: 'main', image: `${testEnv().registry}/${slowService}`, tags: ['1'], repo_auth_key: keyBase64() }),
    });
    const slowId = ((await started.json()) as { id: string }).id;
    await eventually(async () => {
      const log = await fetch(`http://127.0.0.1:${first.httpPort}/api/v1/builds/${slowId}/log`, { headers: auth });
      return (await log.text()).includes('build underway');
    }, 'the slow build to run', 60_000);
    // The server writes a log's head to disk as it comes, but asynchronously: killed a moment after
    // the line was served, it had not always been stored yet (seen once under load).
    const storedLog = path.join(first.workDir, '.history', `${slowId}.ndjson`);
    await eventually(() => readFileSync(storedLog, 'utf8').includes('build underway'), 'the line to be stored', 10_000);
    await first.stop('SIGKILL');

    const second = await startServer({ workDir: first.workDir, args: ['--api-token', FULL] });
    try {
      const get = async (p: string) => fetch(`http://127.0.0.1:${second.httpPort}${p}`, { headers: auth });
      const kept = ((await (await get(`/api/v1/builds?service_id=${service}`)).json()) as { builds: Array<{ id: string; status: string }> }).builds;
      assert.deepEqual(kept.map((b) => b.id), [ids[2], ids[1]], 'the last 2 builds of the service are kept, newest first');
      assert.equal((await get(`/api/v1/builds/${ids[0]}`)).status, 404, 'the oldest was pruned');
      const events = records(await (await get(`/api/v1/builds/${ids[2]}/events`)).text());
      assert.deepEqual(events.at(-1), { ...events.at(-1), type: 'exit', code: 0, status: 'succeeded' });
      assert.match(await (await get(`/api/v1/builds/${ids[2]}/log`)).text(), /^__build_result_meta \{/m);

      const abandoned = (await (await get(`/api/v1/builds/${slowId}`)).json()) as Record<string, unknown>;
      assert.equal(abandoned.status, 'abandoned');
      assert.equal(abandoned.exit_code, null, 'an abandoned build has no exit code');
      const slowEvents = records(await (await get(`/api/v1/builds/${slowId}/events`)).text());
      assert.match(slowEvents.filter((r) => r.type === 'output').map((r) => r.data).join(''), /build underway/);
      assert.deepEqual(slowEvents.at(-1), { ...slowEvents.at(-1), type: 'exit', code: null, status: 'abandoned' });
      await eventually(async () => (await buildContainers()).length === 0, 'the orphaned builder to be removed');

      const stored = readdirSync(path.join(first.workDir, '.history')).map((f) => readFileSync(path.join(first.workDir, '.history', f), 'utf8'));
      assertNoSecrets(...stored);
    } finally {
      await second.stop();
      removeAll(first.workDir);
    }
  });

  it('buildbot.sh --server resumes after its server restarts, prints nothing twice, and exits 255 for the abandoned build', async () => {
    const first = await startServer({ args: ['--api-token', FULL] });
    const port = first.httpPort;
    const repo = repoWith('resume', staticSite({ buildExtra: 'echo "build underway"; sleep 120' }));
    const service = unique('resume');
    const run = spawnRunning(BUILDBOT_SH, ['--server', `http://127.0.0.1:${port}`, ...buildArgs({ service, repo: repo.url, revision: 'main', image: service })], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...engineEnv(), BUILDBOT_TOKEN: FULL },
    });
    let second: ServerProcess | undefined;
    try {
      await run.waitFor(/build underway/, 60_000);
      const list = await fetch(`http://127.0.0.1:${port}/api/v1/builds?service_id=${service}`, { headers: { Authorization: `Bearer ${FULL}` } });
      const [{ id }] = ((await list.json()) as { builds: Array<{ id: string }> }).builds;
      const storedLog = path.join(first.workDir, '.history', `${id}.ndjson`);
      await eventually(() => readFileSync(storedLog, 'utf8').includes('build underway'), 'the line to be stored', 10_000);
      await first.stop('SIGKILL');
      // The client retries for about half a minute; the new server takes the same port and work dir.
      second = await startServer({ workDir: first.workDir, args: ['--api-token', FULL, '--http-listen', `127.0.0.1:${port}`] });
      const res = await run.done;
      assert.equal(res.code, 255, res.stderr);
      assert.match(res.stderr, new RegExp(`^error: build ${id} was abandoned: the server stopped while it ran$`, 'm'));
      assert.equal(res.stdout.split('build underway').length, 2, 'the line was printed once');
      await eventually(async () => (await buildContainers()).length === 0, 'the orphaned builder to be removed');
    } finally {
      run.child.kill('SIGKILL');
      await second?.stop();
      removeAll(first.workDir);
    }
  });
});

describe('the HTTP API while idle and while stopping', () => {
  const repoWith = suiteRepos();
  const auth = { Authorization: `Bearer ${FULL}` };

  /** A GET whose body is collected as it comes; `done` resolves when the server ends it. */
  const stream = (port: number, p: string, accept: string) => {
    const got = { status: 0, headers: {} as http.IncomingHttpHeaders, text: '' };
    const done = new Promise<void>((resolve, reject) => {
      http.get({ host: '127.0.0.1', port, path: p, headers: { ...auth, Accept: accept } }, (res) => {
        got.status = res.statusCode!;
        got.headers = res.headers;
        res.setEncoding('utf8');
        res.on('data', (text: string) => (got.text += text));
        res.on('end', resolve);
        res.on('error', reject);
      }).on('error', reject);
    });
    return { got, done };
  };

  it('sends heartbeats on an idle event stream (SSE comments, blank NDJSON lines), and answers 503 while it stops', async () => {
    // The default heartbeat interval (15 s) is what runs here: no knob for tests to set.
    const server = await startServer({ args: ['--api-token', FULL, '--shutdown-grace', '3'] });
    try {
      const port = server.httpPort;
      const repo = repoWith('idle', staticSite({ buildExtra: 'echo "build underway"; sleep 300' }));
      const service = unique('idle');
      const started = await fetch(`http://127.0.0.1:${port}/api/v1/builds`, {
        method: 'POST', headers: { ...auth, 'Content-Type': 'application/json' },
        body: JSON.stringify({ service_id: service, repo: repo.url, revision: 'main', image: `${testEnv().registry}/${service}`, tags: ['1'], repo_auth_key: keyBase64() }),
      });
      assert.equal(started.status, 202);
      const id = ((await started.json()) as { id: string }).id;
      const sse = stream(port, `/api/v1/builds/${id}/events`, 'text/event-stream');
      const ndjson = stream(port, `/api/v1/builds/${id}/events`, 'application/x-ndjson');
      await eventually(() => sse.got.text.includes('build underway') && ndjson.got.text.includes('build underway'), 'the build to print', 60_000);
      // The build now sleeps: the streams are idle until a heartbeat comes (every 15 s).
      const quietFrom = { sse: sse.got.text.length, ndjson: ndjson.got.text.length };
      await eventually(() => sse.got.text.slice(quietFrom.sse).includes(': heartbeat\n\n') && ndjson.got.text.slice(quietFrom.ndjson - 1).includes('\n\n'), 'a heartbeat on both streams', 25_000)
        .catch((err: Error) => assert.fail(`${err.message}; SSE ends ${JSON.stringify(sse.got.text.slice(-300))}, NDJSON ends ${JSON.stringify(ndjson.got.text.slice(-300))}`));
      assert.equal(sse.got.status, 200);
      assert.match(String(sse.got.headers['content-type']), /^text\/event-stream/);
      assert.equal(sse.got.headers['x-accel-buffering'], 'no');
      assert.ok(sse.got.text.startsWith('retry: 3000\n\n'));
      // Every event is "id: SEQ" and one JSON record; comments are the heartbeats.
      const events = sse.got.text.slice('retry: 3000\n\n'.length).split('\n\n').filter(Boolean);
      const comments = events.filter((e) => e.startsWith(':'));
      assert.ok(comments.length >= 1 && comments.every((c) => c === ': heartbeat'), `comments: ${JSON.stringify(comments)}`);
      const sseRecords = events.filter((e) => !e.startsWith(':')).map((e) => {
        const match = /^id: (\d+)\ndata: (.*)$/s.exec(e);
        assert.ok(match, `an SSE event: ${JSON.stringify(e.slice(0, 200))}`);
        const record = JSON.parse(match[2]) as Rec;
        assert.equal(record.seq, Number(match[1]));
        return record;
      });
      assert.deepEqual(sseRecords.map((r) => r.seq), sseRecords.map((_, i) => i + 1));
      assert.ok(ndjson.got.text.split('\n').every((line) => line === '' || JSON.parse(line).seq > 0), 'NDJSON heartbeats are blank lines');

      // A request already on its way when SIGTERM comes: its body arrives once the server stops.
      const body = JSON.stringify({ service_id: unique('late'), repo: repo.url, revision: 'main', image: `${testEnv().registry}/late`, tags: ['1'] });
      const late = net.connect(port, '127.0.0.1');
      await new Promise((resolve) => late.once('connect', resolve));
      let answer = '';
      late.setEncoding('utf8').on('data', (text: string) => (answer += text));
      late.write(`POST /api/v1/builds HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer ${FULL}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body.slice(0, 10)}`);
      server.child.kill('SIGTERM');
      await server.waitForLog(/ shutdown running=/);
      // The rest of the body, then /healthz on the same connection.
      late.write(`${body.slice(10)}GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n`);
      await eventually(() => /"status":"stopping"/.test(answer) || late.destroyed, 'both answers', 10_000);
      const [submitAnswer, healthAnswer] = answer.split(/(?=HTTP\/1\.1 )/);
      assert.match(submitAnswer, /^HTTP\/1\.1 503 /);
      assert.match(submitAnswer, /\{"error":\{"code":"ESHUTTINGDOWN","message":"the server is shutting down; try again once it is back","field":null\}\}/);
      assert.match(healthAnswer ?? '', /^HTTP\/1\.1 503 /, `the answer to /healthz: ${JSON.stringify(answer)}`);
      assert.match(healthAnswer, /\{"status":"stopping"\}/);
      late.destroy();
      // New connections are refused while it stops.
      await assert.rejects(fetch(`http://127.0.0.1:${port}/healthz`), (err: Error & { cause?: { code?: string } }) => err.cause?.code === 'ECONNREFUSED');

      // The open streams end with the build (cut by the end of the grace) and its exit record.
      await Promise.all([sse.done, ndjson.done]);
      const lastNdjson = records(ndjson.got.text).at(-1)!;
      assert.equal(lastNdjson.type, 'exit');
      assert.equal(lastNdjson.status, 'cancelled');
      assert.match(sse.got.text, /"type":"exit","code":\d+,"status":"cancelled"\}\n\n$/);
      assert.equal(await server.exited, 0);
      await eventually(async () => (await buildContainers()).length === 0, 'the build\'s containers to be removed');
    } finally {
      await server.stop();
      removeAll(server.workDir);
    }
  });
});

function records(text: string): Rec[] {
  return text.split('\n').filter(Boolean).map((l) => JSON.parse(l) as Rec);
}
