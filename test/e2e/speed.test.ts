import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { assertNoSecrets, buildArgs, headers, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { keyBase64, loginCmd, testEnv } from '../helpers/env.js';
import { buildContainers, buildContainersOf } from '../helpers/docker.js';
import { eventually, suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import { removeAll, staticSite } from '../helpers/repos.js';
import { ssh, startServer, type ServerProcess } from '../helpers/server.js';

const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

/** Processes whose command line mentions the path: OpenSSH names a master "ssh: SOCKET [mux]". */
function processesMentioning(text: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replace(/\0/g, ' ');
      if (cmdline.includes(text)) found.push(`${pid} ${cmdline}`);
    } catch {
      // gone meanwhile
    }
  }
  return found;
}

const TRACE_LINE = /^buildbot: build-trace (\{.*\})$/gm;

describe('speed: where the time goes, and the shortcuts that save it', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  it('BUILDBOT_TRACE=1 logs each step with its engine, git and own CPU time; without it, nothing', async () => {
    const repo = repoWith('trace', staticSite());
    const image = unique('trace');
    const args = buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['1'] });
    const traced = await runCli(args, work(), { BUILDBOT_TRACE: '1' });
    assert.equal(traced.code, 0, traced.stderr);
    const rows = [...traced.stderr.matchAll(TRACE_LINE)].map((m) => JSON.parse(m[1]) as Record<string, number | string>);
    assert.deepEqual(rows.map((r) => r.step), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done', 'cleanup', 'total']);
    const by = Object.fromEntries(rows.map((r) => [r.step, r as Record<string, number>]));
    assert.ok(by.checkout.git_ms > 0 && by.checkout.engine_ms === 0, `the clone is git time: ${JSON.stringify(by.checkout)}`);
    for (const step of ['build.sh', 'image', 'test', 'push']) {
      assert.ok(by[step].engine_ms > 0 && by[step].git_ms === 0, `${step} is engine time: ${JSON.stringify(by[step])}`);
      assert.ok(by[step].engine_ms <= by[step].wall_ms);
    }
    assert.ok(by.total.wall_ms >= by.total.engine_ms + by.total.git_ms - 1, 'the steps here never wait on both at once');
    assertNoSecrets(traced.stderr);

    assert.doesNotMatch(traced.stderr, /build-trace-call/, 'calls only when asked for');

    const calls = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['3'] }), work(), { BUILDBOT_TRACE: 'calls' });
    assert.equal(calls.code, 0, calls.stderr);
    const lines = [...calls.stderr.matchAll(/^buildbot: build-trace-call (\{.*\})$/gm)].map((m) => JSON.parse(m[1]) as { kind: string; what: string; at_ms: number; ms: number });
    const whats = lines.map((l) => l.what);
    for (const what of ['GET /_ping', 'git rev-parse', 'POST /containers/create', 'POST /build', `POST /images/${testEnv().registry}/${image}/push`]) {
      assert.ok(whats.includes(what), `${what} in ${whats.join(', ')}`);
    }
    assert.ok(lines.every((l, i) => l.ms >= 0 && (i === 0 || l.at_ms >= lines[i - 1].at_ms)), 'in the order they started');
    assert.ok(whats.every((w) => !w.includes('?') && !/[0-9a-f]{13}/.test(w)), `no query, ids cut: ${whats.join(', ')}`);
    assert.equal([...calls.stderr.matchAll(TRACE_LINE)].length, rows.length, 'and the step lines');
    assertNoSecrets(calls.stderr);

    const plain = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['2'] }), work());
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /build-trace/);
  });
});

describe('speed: the git host\'s SSH connection is shared, per key, while the server runs', () => {
  let server: ServerProcess;
  const repoWith = suiteRepos();
  before(async () => {
    server = await startServer({ args: ['--max-builds', '2'] });
  });
  after(async () => {
    if (server.child.exitCode === null) await server.stop();
    removeAll(server.workDir);
  });
  const mux = () => path.join(server.workDir, '.ssh-mux');

  it('reuses a master for the same key after its key file is gone, never for another key; shutdown closes it', async () => {
    const repo = repoWith('mux', staticSite());
    const service = unique('mux');
    const build = (revision: string, key?: string, tag = '1') =>
      ssh(server, remote(buildArgs({ service, repo: repo.url, revision, image: service, tags: [tag], key: key ? keyBase64(key) : undefined })));

    // The first build pins the git host's key and connects alone; the next one leaves a master behind.
    for (const tag of ['1', '2']) {
      const res = await build('main', undefined, tag);
      assert.equal(res.code, 0, res.stderr);
    }
    const masters = processesMentioning(mux());
    assert.equal(masters.length, 1, `one master for the key and host: ${masters.join('\n')}`);
    assert.match(masters[0], /\[mux\]/);
    assert.deepEqual(readdirSync(path.join(server.workDir, '.keys')), [], 'the key files are gone, the master lives on');
    const [dir] = readdirSync(mux());
    assert.equal(readdirSync(mux()).length, 1);
    assert.equal(statMode(mux()), 0o700);
    assert.equal(statMode(path.join(mux(), dir)), 0o700);

    const sha = repo.commit({ 'site/index.html.in': '<h1>new @VERSION@</h1>\n' });
    const reused = await build(sha, undefined, '3');
    assert.equal(reused.code, 0, reused.stderr);
    assert.equal(processesMentioning(mux()).length, 1, 'the same master served the fetch');

    // A key the git host refuses, right after, to the same host, port and user, for the same service.
    const refused = await build(repo.commit({ 'site/index.html.in': '<h1>other @VERSION@</h1>\n' }), 'stranger_ed25519', '4');
    assert.equal(refused.code, 2, refused.stdout + refused.stderr);
    assert.match(refused.stderr, /the git host refused the key/);
    // Another key the host accepts gets a master of its own.
    const rsa = await build(repo.head(), 'deploy_rsa', '5');
    assert.equal(rsa.code, 0, rsa.stderr);
    const withSocket = readdirSync(mux()).filter((d) => readdirSync(path.join(mux(), d)).length > 0);
    assert.equal(withSocket.length, 2, 'each key has its own directory, and the refused key no master');
    assert.equal(processesMentioning(mux()).length, 2);

    assert.equal(await server.stop(), 0);
    assert.match(server.log(), / git-ssh-closed connections=[12]$/m);
    assert.ok(!existsSync(mux()), 'no control socket left');
    assert.deepEqual(processesMentioning(mux()), [], 'no master left');
    assertNoSecrets(server.log());
  });
});

function statMode(p: string): number {
  return statSync(p).mode & 0o777;
}

describe('speed: shortcuts that change nothing the build sees', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();
  let server: ServerProcess;
  before(async () => {
    server = await startServer({ args: ['--max-builds', '2'] });
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  // The test prints the interfaces of its network namespace, and what it can see of the builder.
  const netProbe = () => staticSite({
    buildExtra: 'echo builder-was-here > /tmp/builder-mark',
    testLine: '#test_in_container_entrypoint=sh -c "cut -d: -f1 /proc/net/dev | tail -n +3 | tr -d \' \' | sort | tr \'\\n\' , ; echo; ls /tmp; echo probe-done"',
  });

  it('the in-image test joins a namespace made ahead: the network it sees is the build network, and the holders go with the build', async () => {
    const repo = repoWith('netns', netProbe());
    const image = unique('netns');
    const ours = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['1'] })));
    assert.equal(ours.code, 0, ours.stderr);
    assert.match(ours.stdout, /^eth0,lo,$/m, 'the default network: an interface on the bridge, and loopback');
    assert.match(ours.stdout, /probe-done/);
    assert.doesNotMatch(ours.stdout, /builder-mark/, 'nothing of the builder\'s filesystem');
    assert.deepEqual(await buildContainers(), [], 'no container left, holders included');

    // A second build in the same server also gets the builder's namespace ahead.
    const again = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['2'] })));
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^eth0,lo,$/m);
    assert.deepEqual(await buildContainers(), []);
    assert.doesNotMatch(server.log(), /network-holder-failed/);

    const none = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['3'] }), work(), { BUILDBOT_BUILD_NETWORK: 'none' });
    assert.equal(none.code, 0, none.stderr);
    assert.match(none.stdout, /^lo,$/m, 'BUILDBOT_BUILD_NETWORK=none: loopback only');
    assert.deepEqual(await buildContainers(), []);
  });

  it('a login the registry just accepted is not checked again; other credentials always are', async () => {
    const repo = repoWith('login-cache', staticSite());
    const image = unique('login-cache');
    const build = (tag: string, login?: string) => ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: [tag], login })));
    const first = await build('1');
    assert.equal(first.code, 0, first.stderr);
    const second = await build('2');
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /the registry accepted this login less than 60 s ago; not asking again/);

    const wrong = await build('3', loginCmd('not-the-password-71c2'));
    assert.equal(wrong.code, 2, wrong.stdout + wrong.stderr);
    assert.match(wrong.stderr, /^error: registry 127\.0\.0\.1:\d+ refused the login of user "buildbot-test"/m);
    assert.deepEqual(headers(wrong.stdout), ['login']);
    assertNoSecrets(first.stdout, second.stdout, wrong.stdout, wrong.stderr, server.log());
  });
});

describe('speed: a spare network namespace waits for the next build of a service', () => {
  const repoWith = suiteRepos();
  const servers: ServerProcess[] = [];
  after(async () => {
    for (const s of servers) if (s.child.exitCode === null) await s.stop('SIGKILL');
    removeAll(...servers.map((s) => s.workDir));
  });
  const start = async (args: string[] = []) => {
    const s = await startServer({ args: ['--max-builds', '2', ...args] });
    servers.push(s);
    return s;
  };
  const spares = async (service: string) => (await buildContainersOf('spare-network')).filter((c) => c.Labels['io.buildbot.service'] === service);
  // The builder and the test print their host names: a container that joins a holder's namespace takes the holder's.
  const hostProbe = () => staticSite({ buildExtra: 'echo "builder-host=$(hostname)"', testLine: "#test_in_container_entrypoint=sh -c 'echo test-host=$(hostname)'" });
  const builderHost = (stdout: string) => /^builder-host=(\S+)$/m.exec(stdout)?.[1];
  const testHost = (stdout: string) => /^test-host=(\S+)$/m.exec(stdout)?.[1];
  const ids = async (service: string) => (await spares(service)).map((c) => c.Id.slice(0, 12)).sort();

  it('made after a service\'s second build, taken by the next build\'s builder and removed with it; none is a build container; shutdown removes it', async () => {
    const server = await start();
    const repo = repoWith('spare', hostProbe());
    const service = unique('spare');
    const build = (tag: string) => ssh(server, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: [tag] })));
    // A service built once may not come back: it gets no spare.
    const once = await build('0');
    assert.equal(once.code, 0, once.stderr);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(await spares(service), [], 'no spare after a service\'s first build');
    const first = await build('1');
    assert.equal(first.code, 0, first.stderr);
    await eventually(async () => (await spares(service)).filter((c) => c.State === 'running').length === 2, 'the two spares to run');
    const made = await ids(service);
    assert.deepEqual(await buildContainers(), [], 'not build containers');
    for (const spare of await spares(service)) assert.equal(spare.Labels['io.buildbot.pid'], String(server.child.pid));

    const second = await build('2');
    assert.equal(second.code, 0, second.stderr);
    assert.deepEqual([builderHost(second.stdout), testHost(second.stdout)].sort(), made, 'the builder and the test each joined a spare\'s namespace');
    assert.deepEqual(await buildContainers(), [], 'the build removed them with its other containers');
    await eventually(async () => (await spares(service)).length === 2, 'the next spares');
    assert.ok((await ids(service)).every((id) => !made.includes(id)), 'a spare serves one container of one build');

    // Another service never gets it.
    const other = unique('spare-other');
    for (const tag of ['1', '2']) {
      const third = await ssh(server, remote(buildArgs({ service: other, repo: repo.url, revision: 'main', image: other, tags: [tag] })));
      assert.equal(third.code, 0, third.stderr);
      assert.ok(!(await ids(service)).includes(builderHost(third.stdout)!) && !(await ids(service)).includes(testHost(third.stdout)!));
    }
    assert.equal((await spares(service)).length, 2);

    assert.equal(await server.stop(), 0);
    assert.deepEqual([...await spares(service), ...await spares(other)], [], 'shutdown removed the spares');
    assert.doesNotMatch(server.log(), /spare-network-failed|cleanup-failed/);
  });

  it('goes when no build takes it in time; --spare-network 0 makes none; a killed server\'s spare goes at the next start', async () => {
    const repo = repoWith('spare-ttl', hostProbe());
    const service = unique('spare-ttl');
    const args = () => remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['1'] }));
    const brief = await start(['--spare-network', '1']);
    assert.equal((await ssh(brief, args())).code, 0);
    assert.equal((await ssh(brief, args())).code, 0);
    await eventually(async () => (await spares(service)).length === 2, 'the spares');
    await eventually(async () => (await spares(service)).length === 0, 'the spares to go after a second');
    await brief.stop();

    const off = await start(['--spare-network', '0']);
    assert.equal((await ssh(off, args())).code, 0);
    assert.equal((await ssh(off, args())).code, 0);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    assert.deepEqual(await spares(service), [], 'none made');
    await off.stop();

    const killed = await start();
    assert.equal((await ssh(killed, args())).code, 0);
    assert.equal((await ssh(killed, args())).code, 0);
    await eventually(async () => (await spares(service)).length === 2, 'the spares');
    await killed.stop('SIGKILL');
    const next = await start();
    assert.deepEqual(await spares(service), [], 'the orphan sweep removed it');
    assert.match(next.log(), /orphan-removed container=[0-9a-f]{12} service=spare-ttl-/);
    await next.stop();
  });
});
