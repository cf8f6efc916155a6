import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { engineEnv, keyPath } from '../helpers/env.js';
import { assertNoSecrets, buildArgs, headers, resultMeta, unique } from '../helpers/build.js';
import { buildContainers, buildContainersOf } from '../helpers/docker.js';
import { registryTags } from '../helpers/registry.js';
import { removeAll, staticSite } from '../helpers/repos.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { ssh, startServer, startSsh, type ServerProcess } from '../helpers/server.js';

/** The command line a CI script would send: the words quoted for the server's shell-style split. */
const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

describe('the SSH server, driven by the OpenSSH client', () => {
  let server: ServerProcess;
  const repoWith = suiteRepos();
  before(async () => {
    server = await startServer({ args: ['--max-builds', '2'] });
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('builds for the authorized key, with stdout and stderr apart and the build\'s exit status', async () => {
    const repo = repoWith('ssh-site', staticSite());
    const image = unique('ssh-site');
    const res = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['1.0.0', 'latest'] })));
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(headers(res.stdout), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done']);
    assert.match(res.stderr, /a warning on stderr/);
    assert.doesNotMatch(res.stdout, /a warning on stderr/);
    assert.equal(resultMeta(res.stdout).service_id, image);
    assert.deepEqual(await registryTags(image), ['1.0.0', 'latest']);
    assert.match(server.log(), new RegExp(`build-start build=\\w+ service=${image} revision=main image=\\S+/${image} tags="?1.0.0,latest`));
    assert.match(server.log(), new RegExp(`build-end build=\\w+ service=${image} exit=0 duration_ms=\\d+`));
    assertNoSecrets(res.stdout, res.stderr, server.log());
  });

  it('encrypts with ssh2\'s native addon, which the project\'s install builds', () => {
    // The JavaScript fallback works too, but streams output at about two thirds of the CPU efficiency.
    assert.match(server.log(), / listening addr=\S+ .*ssh-crypto=native$/m, 'ssh2\'s addon was not built: see test/env/npm-deps.sh');
  });

  it('exits with build.sh\'s own code, 2 for usage, 0 for --help', async () => {
    const repo = repoWith('ssh-fail', staticSite({ buildExtra: 'exit 3' }));
    const image = unique('ssh-fail');
    const failed = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image })));
    assert.equal(failed.code, 3);
    assert.match(failed.stderr, /^error: build\.sh exited with code 3/m);

    const usage = await ssh(server, remote(['--service_id', 'x']));
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /^Usage: buildbot\.sh/m);
    assert.match(usage.stderr, /^error: missing --repo, --revision, --image and --tag$/m, 'every missing flag at once');
    assert.ok(!usage.stderr.includes('--stall-timeout'), 'the usage over SSH leaves out the flags only a local run takes');

    const help = await ssh(server, ['buildbot.sh', '--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--docker_login_cmd/);
    for (const alias of ['/bin/buildbot.sh', 'buildbot']) assert.equal((await ssh(server, [alias, '--help'])).code, 0);
  });

  it('refuses every key but the authorized one, passwords, and clients without a key', async () => {
    for (const key of ['stranger_ed25519', 'client_rsa', null]) {
      const res = await ssh(server, ['buildbot.sh', '--help'], { key });
      assert.equal(res.code, 255, `key ${key}`);
      assert.match(res.stderr, /Permission denied \(publickey\)/);
    }
    const password = await ssh(server, ['buildbot.sh', '--help'], { key: null, extra: ['-o', 'PubkeyAuthentication=no', '-o', 'PreferredAuthentications=password,keyboard-interactive'] });
    assert.equal(password.code, 255);
    assert.match(password.stderr, /Permission denied \(publickey\)/);
    const stranger = execFileSync('ssh-keygen', ['-lf', keyPath('stranger_ed25519.pub')], { encoding: 'utf8' }).split(' ')[1];
    assert.ok(server.log().includes(`auth-refused addr=127.0.0.1:`) && server.log().includes(`key=${stranger}`), 'the refused key is logged by fingerprint');
  });

  it('refuses other commands, a shell, a terminal, subsystems, forwarding and shell syntax, saying why', async () => {
    const cases: Array<[string[], string[], number, RegExp]> = [
      [['ls', '/'], [], 127, /no such command "ls"; this server has no shell/],
      [[], [], 1, /this server has no shell; it runs one command: buildbot\.sh/],
      [['buildbot.sh', '--help'], ['-tt'], 1, /does not run on a terminal; run ssh without -t/],
      [['sftp'], ['-s'], 1, /the sftp subsystem is not available/],
      [['buildbot.sh --help; id'], [], 2, /";" is a shell operator/],
      [['buildbot.sh $(id)'], [], 2, /would need a shell/],
      [['buildbot.sh "--help'], [], 2, /a double quote is not closed/],
    ];
    for (const [command, extra, code, message] of cases) {
      const res = await ssh(server, command, { extra });
      assert.equal(res.code, code, `${extra.join(' ')} ${command.join(' ')}: ${res.stderr}`);
      assert.match(res.stderr, message);
      assert.equal(res.stderr.trim().split('\n').filter((l) => l.startsWith('buildbot:')).length, 1, 'one line of explanation');
    }
    const forward = await ssh(server, ['buildbot.sh', '--help'], { extra: ['-R', '0:127.0.0.1:1', '-o', 'ExitOnForwardFailure=yes'] });
    assert.equal(forward.code, 255);
    assert.match(forward.stderr, /remote port forwarding failed/);
  });

  it('a killed client cancels its build: containers removed, nothing pushed, the service free again', async () => {
    const repo = repoWith('ssh-kill', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
    const image = unique('ssh-kill');
    const client = startSsh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image })));
    await client.waitFor(/long build started/);
    assert.equal((await buildContainersOf('builder')).length, 1);
    client.child.kill('SIGKILL');
    await eventually(async () => (await buildContainers()).length === 0, 'removal of the build container', 10_000);
    await server.waitForLog(new RegExp(`build-end build=\\w+ service=${image} exit=130`));
    assert.deepEqual(await registryTags(image), []);

    const next = repoWith('ssh-kill-next', staticSite());
    const again = await ssh(server, remote(buildArgs({ service: image, repo: next.url, revision: 'main', image })));
    assert.equal(again.code, 0, again.stderr);
    assert.doesNotMatch(again.stdout, /waiting for it to finish/);
  });

  it('runs different services in parallel up to --max-builds and tells the others their place in line', async () => {
    const builds = [1, 2, 3].map((n) => {
      const repo = repoWith(`ssh-par${n}`, staticSite({ buildExtra: 'sleep 2' }));
      const image = unique(`ssh-par${n}`);
      return { image, run: startSsh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image }))) };
    });
    const results = await Promise.all(builds.map((b) => b.run.done));
    results.forEach((r) => assert.equal(r.code, 0, r.stderr));
    const queued = results.filter((r) => /^queued: 1 in line; 2 builds run at once$/m.test(r.stdout));
    assert.equal(queued.length, 1, 'exactly one of three waited for a slot');
    for (const b of builds) assert.deepEqual(await registryTags(b.image), ['1.0.0']);
  });

  it('runs two builds of one service one after the other', async () => {
    const repo = repoWith('ssh-serial', staticSite({ buildExtra: 'echo "serial build running"; sleep 2' }));
    const image = unique('ssh-serial');
    const first = startSsh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['1'] })));
    await first.waitFor(/serial build running/);
    const second = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['2'] })));
    const firstResult = await first.done;
    assert.equal(firstResult.code, 0);
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /another build of service .* is running; waiting for it to finish/);
  });

  it('lets a build wait for its service without holding a build slot', async () => {
    // --max-builds is 2 here: A runs, a second build of A waits for it, and B still starts at once.
    const slow = repoWith('ssh-slot-a', staticSite({ buildExtra: 'echo "slot build running"; sleep 3' }));
    const a = unique('ssh-slot-a');
    const first = startSsh(server, remote(buildArgs({ service: a, repo: slow.url, revision: 'main', image: a, tags: ['1'] })));
    await first.waitFor(/slot build running/);
    const second = startSsh(server, remote(buildArgs({ service: a, repo: slow.url, revision: 'main', image: a, tags: ['2'] })));
    await second.waitFor(/another build of service .* is running; waiting for it to finish/);
    const other = repoWith('ssh-slot-b', staticSite());
    const b = unique('ssh-slot-b');
    const third = await ssh(server, remote(buildArgs({ service: b, repo: other.url, revision: 'main', image: b })));
    assert.equal(third.code, 0, third.stderr);
    assert.doesNotMatch(third.stdout, /queued:/, 'a slot was free: the waiting build does not hold one');
    const [r1, r2] = await Promise.all([first.done, second.done]);
    assert.equal(r1.code, 0, r1.stderr);
    assert.equal(r2.code, 0, r2.stderr);
    assert.deepEqual(await registryTags(a), ['1', '2']);
  });

  it('serves 20 connections at once', async () => {
    const results = await Promise.all(Array.from({ length: 20 }, () => ssh(server, ['buildbot.sh', '--help'])));
    assert.deepEqual(results.map((r) => r.code), Array(20).fill(0));
  });

  it('a flood of silent connections from one address does not lock out another', async () => {
    const flood = await startServer({ args: ['--login-grace-time', '2'] });
    try {
      const sockets = await Promise.all(Array.from({ length: 40 }, () => new Promise<net.Socket>((resolve) => {
        const s = net.connect({ port: flood.port, host: '127.0.0.1' }, () => resolve(s));
        s.on('error', () => {});
        // Read (and drop) the server's banner, or 'close' never comes.
        s.resume();
      })));
      const closed = sockets.map((s) => new Promise<number>((resolve) => s.on('close', () => resolve(Date.now()))));
      const t0 = Date.now();
      const other = await ssh(flood, ['buildbot.sh', '--help'], { extra: ['-b', '127.0.0.2'] });
      assert.equal(other.code, 0, 'a client from another address gets in');
      const times = (await Promise.all(closed)).map((t) => t - t0).sort((a, b) => a - b);
      assert.ok(times.slice(0, 8).every((t) => t < 1000), 'connections past 32 from one address are closed at once');
      assert.ok(times.slice(8).every((t) => t >= 1000 && t < 5000), 'the rest are closed after the login grace time');
      assert.match(flood.log(), /connection-refused .* reason="too many unauthenticated connections from this address"/);
    } finally {
      await flood.stop();
      removeAll(flood.workDir);
    }
  });

  it('delivers 100 MB of output intact, and a client that stops reading makes the server wait, not buffer', async () => {
    const lines = 13_000_000;
    const repo = repoWith('ssh-big', { ...staticSite({ buildExtra: `echo BEGIN; seq 1 ${lines}; echo END` }) });
    const image = unique('ssh-big');
    const args = ['-p', String(server.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'LogLevel=ERROR', '-i', keyPath('client_ed25519'), '-o', 'IdentitiesOnly=yes', 'root@127.0.0.1',
      ...remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image }))];
    const child = spawn('ssh', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    const rss = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;
    const hash = createHash('sha256');
    let state: 'before' | 'inside' | 'after' = 'before';
    let pending = '';
    let received = 0;
    let paused = false;
    let rssWhilePaused = 0;
    let rssAtPause = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      received += chunk.length;
      pending += chunk.toString('latin1');
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, nl + 1);
        pending = pending.slice(nl + 1);
        if (state === 'inside' && line === 'END\n') state = 'after';
        else if (state === 'inside') hash.update(line, 'latin1');
        else if (state === 'before' && line === 'BEGIN\n') state = 'inside';
      }
      if (!paused && received > 10_000_000) {
        paused = true;
        child.stdout.pause();
        rssAtPause = rss();
        const sampler = setInterval(() => (rssWhilePaused = Math.max(rssWhilePaused, rss())), 100);
        setTimeout(() => {
          clearInterval(sampler);
          child.stdout.resume();
        }, 3000);
      }
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    assert.equal(code, 0);
    assert.equal(state, 'after');
    const expected = createHash('sha256');
    for (let start = 1; start <= lines; start += 100_000) {
      const end = Math.min(lines, start + 99_999);
      expected.update(Array.from({ length: end - start + 1 }, (_, i) => `${start + i}\n`).join(''));
    }
    assert.equal(hash.digest('hex'), expected.digest('hex'), 'every byte arrived in order');
    assert.ok(received > 100_000_000, `received ${received} bytes`);
    assert.ok(rssWhilePaused - rssAtPause < 64 * 1024 * 1024, `server memory grew by ${((rssWhilePaused - rssAtPause) / 1048576).toFixed(1)} MB while the client did not read`);
  });
});

describe('the SSH server across restarts and signals', () => {
  const repoWith = suiteRepos();

  it('refuses to start without an authorized key, and says how to give one', async () => {
    const res = execFileSync('sh', ['-c', `${process.execPath} dist/src/cli/server-main.js --listen 127.0.0.1:0 2>&1; echo "exit=$?"`], { encoding: 'utf8', env: { PATH: process.env.PATH } });
    assert.match(res, /^error: no authorized key: the server never starts open/m);
    assert.match(res, /--authorized-key "\$\(cat ~\/\.ssh\/id_ed25519\.pub\)"/);
    assert.match(res, /exit=2$/m);
  });

  it('a busy address stops it at start: exit 2, naming the flag to change', async () => {
    const first = await startServer();
    const run = (args: string) => execFileSync('sh', ['-c', `${process.execPath} dist/src/cli/server-main.js --authorized-key @${keyPath('client_ed25519.pub')} --work-dir ${first.workDir} ${args} 2>&1; echo "exit=$?"`], { encoding: 'utf8', env: { PATH: process.env.PATH, ...engineEnv() } });
    const ssh = run(`--listen 127.0.0.1:${first.port} --http-listen none`);
    assert.match(ssh, new RegExp(`^error: --listen 127\\.0\\.0\\.1:${first.port}: the address is in use; pick another with --listen$`, 'm'));
    assert.match(ssh, /exit=2$/m);
    const http = run(`--listen 127.0.0.1:0 --http-listen 127.0.0.1:${first.httpPort}`);
    assert.match(http, new RegExp(`^error: --http-listen 127\\.0\\.0\\.1:${first.httpPort}: the address is in use; pick another with --http-listen`, 'm'));
    assert.match(http, /exit=2$/m);
    await first.stop();
    removeAll(first.workDir);
  });

  it('keeps its host key across restarts and prints its fingerprint', async () => {
    const first = await startServer();
    const scanned = execFileSync('ssh-keyscan', ['-p', String(first.port), '-t', 'ed25519', '127.0.0.1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
    const fingerprint = execFileSync('ssh-keygen', ['-lf', '-'], { input: scanned, encoding: 'utf8' }).split(' ')[1];
    assert.equal(first.fingerprint, fingerprint, 'the logged fingerprint is the one clients see');
    await first.stop();
    const second = await startServer({ workDir: first.workDir });
    assert.equal(second.fingerprint, first.fingerprint);
    assert.match(second.log(), /host-key file=\S+ fingerprint=\S+ created=false/);
    await second.stop();
    removeAll(first.workDir);
  });

  it('on SIGTERM stops accepting and lets a running build finish within the grace period', async () => {
    const server = await startServer({ args: ['--shutdown-grace', '60'] });
    const repo = repoWith('term-finish', staticSite({ buildExtra: 'echo "build underway"; sleep 3' }));
    const image = unique('term-finish');
    const client = startSsh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image })));
    await client.waitFor(/build underway/);
    server.child.kill('SIGTERM');
    await server.waitForLog(/ shutdown running=1/);
    const late = await ssh(server, ['buildbot.sh', '--help']);
    assert.notEqual(late.code, 0, 'no new connections while shutting down');
    const res = await client.done;
    assert.equal(res.code, 0, res.stderr);
    assert.equal(await server.exited, 0);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
    removeAll(server.workDir);
  });

  it('on SIGTERM aborts builds still running after the grace period and leaves nothing behind', async () => {
    const server = await startServer({ args: ['--shutdown-grace', '1'] });
    const repo = repoWith('term-abort', staticSite({ buildExtra: 'echo "build underway"; sleep 120' }));
    const image = unique('term-abort');
    const client = startSsh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image })));
    await client.waitFor(/build underway/);
    server.child.kill('SIGTERM');
    const res = await client.done;
    assert.equal(res.code, 130);
    assert.match(res.stderr, /^error: build cancelled/m);
    assert.equal(await server.exited, 0);
    assert.deepEqual(await buildContainers(), []);
    assert.deepEqual(await registryTags(image), []);
    removeAll(server.workDir);
  });

  it('at start, removes the containers of a server that died', async () => {
    const dead = await startServer();
    const repo = repoWith('orphan', staticSite({ buildExtra: 'echo "build underway"; sleep 120' }));
    const image = unique('orphan');
    const client = startSsh(dead, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image })));
    await client.waitFor(/build underway/);
    await dead.stop('SIGKILL');
    await client.done;
    assert.equal((await buildContainersOf('builder')).length, 1, 'the dead server left its builder behind');
    assert.equal(readdirSync(path.join(dead.workDir, '.keys')).length, 1, 'and the deploy key of that build');
    const next = await startServer({ workDir: dead.workDir });
    assert.match(next.log(), /orphan-removed container=[0-9a-f]{12} build=\w+ service=orphan-/);
    assert.match(next.log(), /orphan-key-removed dir=\d+-/);
    assert.deepEqual(await buildContainers(), []);
    assert.deepEqual(readdirSync(path.join(dead.workDir, '.keys')), []);
    await next.stop();
    removeAll(dead.workDir);
  });
});
