import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { buildArgs, unique } from '../helpers/build.js';
import type Docker from 'dockerode';
import { buildContainersOf, docker as testDocker } from '../helpers/docker.js';
import { copyImages, startPrivateEngine, type PrivateEngine } from '../helpers/private-engine.js';
import { engineSocket, testEnv } from '../helpers/env.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { registryTags } from '../helpers/registry.js';
import { removeAll, staticSite, type GitRepo } from '../helpers/repos.js';
import { ssh, startServer, startSsh, type ServerProcess } from '../helpers/server.js';
import { startSocketRelay, startTcpRelay } from '../helpers/tcp-relay.js';

/** The command line a CI script would send: the words quoted for the server's shell-style split. */
const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

const keyDirs = (workDir: string) => {
  try {
    return readdirSync(path.join(workDir, '.keys'));
  } catch {
    return [];
  }
};

/** A wait with a bound: past it the test fails and shows the server's log instead of hanging. */
async function within<T>(promise: Promise<T>, ms: number, what: string, server: ServerProcess): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what} took over ${ms} ms; server log:\n${server.log()}`)), ms)));
  try {
    return await Promise.race([promise, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The test registry and git host (test/env/up.sh), stopped and started again as an outage would. */
const envDir = () => testEnv().dir;
function stopByPidFile(file: string): void {
  const pid = Number(readFileSync(file, 'utf8'));
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
}
async function untilAnswers(check: () => Promise<boolean>, what: string): Promise<void> {
  await eventually(check, what, 20_000);
}
const registryUp = () => fetch(`http://${testEnv().registry}/v2/`).then((r) => r.status === 401, () => false);
const stopRegistry = () => stopByPidFile(path.join(envDir(), 'registry.pid'));
async function startRegistry(): Promise<void> {
  const log = openSync(path.join(envDir(), 'registry.log'), 'a');
  const child = spawn('docker-registry', ['serve', path.join(envDir(), 'registry', 'config.yml')], { stdio: ['ignore', log, log], detached: true });
  child.unref();
  writeFileSync(path.join(envDir(), 'registry.pid'), String(child.pid));
  await untilAnswers(registryUp, 'the registry to answer');
}
const gitHostUp = () => new Promise<boolean>((resolve) => {
  const socket = net.connect(testEnv().gitPort, testEnv().gitHost, () => {
    socket.destroy();
    resolve(true);
  });
  socket.on('error', () => resolve(false));
});
const stopGitHost = () => stopByPidFile(path.join(envDir(), 'githost', 'sshd.pid'));
async function startGitHost(): Promise<void> {
  execFileSync(execFileSync('sh', ['-c', 'command -v sshd || echo /usr/sbin/sshd'], { encoding: 'utf8' }).trim(),
    ['-f', path.join(envDir(), 'githost', 'sshd_config'), '-E', path.join(envDir(), 'githost', 'sshd.log')]);
  await untilAnswers(gitHostUp, 'the git host to answer');
}

/** The `error: …` lines a user saw: every fault ends with exactly one. */
export const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('error: '));

/**
 * What every fault must leave: no container, no key file, nothing in the registry, and the
 * service free (the next build of it, once the repository builds, succeeds without waiting for a lock).
 */
async function assertNothingLeft(server: ServerProcess, service: string, repo: GitRepo, docker: Docker = testDocker, lockMayBeStale = false): Promise<void> {
  const left = () => docker.listContainers({ all: true, filters: { label: ['io.buildbot.build'] } });
  await eventually(async () => (await left()).length === 0, 'removal of every build container', 30_000);
  assert.deepEqual(keyDirs(server.workDir), [], 'no deploy key file remains');
  assert.deepEqual(await registryTags(service), [], 'nothing was pushed');
  repo.commit(staticSite(), 'a build that succeeds');
  const next = await within(ssh(server, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['next'] }))), 120_000, 'the next build', server);
  assert.equal(next.code, 0, `the next build of the service succeeds:\n${next.stderr}`);
  if (!lockMayBeStale) assert.doesNotMatch(next.stdout, /waiting for it to finish/, 'the service lock was released');
  assert.deepEqual(await registryTags(service), ['next']);
}

describe('faults: each ends with one error line, a non-zero exit and nothing left behind', () => {
  const repoWith = suiteRepos();
  let server: ServerProcess;
  before(async () => {
    // Short keepalive settings: a silent client is given up after about 1 s x (2 + 1).
    server = await startServer({ args: ['--keepalive-interval', '1', '--keepalive-count', '2', '--max-builds', '4'] });
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('a client frozen behind a relay (no FIN) is given up by the keepalive, and its build cancelled', async () => {
    const repo = repoWith('fault-freeze', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
    const service = unique('fault-freeze');
    const relay = await startTcpRelay(server.port);
    const client = startSsh({ port: relay.port }, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
    try {
      await client.waitFor(/long build started/);
      assert.equal((await buildContainersOf('builder')).length, 1, 'the builder runs');
      relay.freeze();
      await server.waitForLog(/connection-error addr=\S+ error="Keepalive timeout"/, 20_000);
      await server.waitForLog(new RegExp(`build-end build=\\w+ service=${service} exit=130`), 20_000);
      await assertNothingLeft(server, service, repo);
    } finally {
      client.child.kill('SIGKILL');
      await relay.stop();
      await client.done;
    }
  });

  // The engine cut at two moments of build.sh, each reached on purpose (issue 9: a cut left to chance went unnoticed in
  // 2 of 3 CI runs and the build hung). Once the test's network holder runs, the only call open is build.sh's wait,
  // whose answer the engine starts at once (headers) and ends when the container exits: cut in between, dockerode
  // never settled it. While the holder is being created, the cut also strikes that background call.
  const cuts = [
    { when: 'once the test\'s network holder runs', hold: undefined },
    { when: 'while the test\'s network holder is being created', hold: '"io.buildbot.role":"network"' },
  ];
  for (const { when, hold } of cuts) {
    it(`the engine cut off during build.sh ${when}: one error line, and the removal retried until the engine is back`, async () => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'buildbot-relay-'));
      const relay = await startSocketRelay(engineSocket(), path.join(dir, 'engine.sock'), { hold });
      const cutOff = await startServer({ env: { DOCKER_HOST: `unix://${relay.path}` } });
      try {
        const repo = repoWith('fault-enginecut', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
        const service = unique('fault-enginecut');
        const client = startSsh(cutOff, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
        await client.waitFor(/long build started/);
        if (hold) {
          await within(relay.held, 30_000, 'the holder\'s create call', cutOff);
        } else {
          await eventually(async () => (await buildContainersOf('network')).some((c) => c.State === 'running'), 'the network holder to run', 30_000);
        }
        await relay.cut();
        const res = await within(client.done, 60_000, 'the build', cutOff);
        assert.equal(res.code, 1, res.stderr);
        assert.deepEqual(errorLines(res.stderr), [errorLines(res.stderr)[0]], 'one error line');
        assert.match(errorLines(res.stderr)[0], /^error: the Docker engine went away while running build\.sh \(its connection was (cut|closed)\); .*check that dockerd is running/);
        await cutOff.waitForLog(/ cleanup-retry container=[0-9a-f]{12} build=\w+ attempt=1 /);
        await cutOff.waitForLog(/ engine-down /);
        assert.equal((await buildContainersOf('builder')).length, 1, 'the builder outlived the cut, so far');
        await relay.restore();
        await cutOff.waitForLog(/ engine-back( |$)/m);
        await cutOff.waitForLog(/ (cleanup-done container=[0-9a-f]{12} build=\w+ attempts=\d+|orphan-removed container=[0-9a-f]{12})/);
        await assertNothingLeft(cutOff, service, repo);
      } finally {
        await cutOff.stop();
        await relay.cut();
        removeAll(dir, cutOff.workDir);
      }
    });
  }

  it('the registry stopped during build.sh: the push fails with one line, nothing half-pushed', async () => {
    const repo = repoWith('fault-registry', staticSite({ buildExtra: 'echo "build started"; sleep 3' }));
    const service = unique('fault-registry');
    const client = startSsh(server, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
    try {
      await client.waitFor(/build started/);
      stopRegistry();
      const res = await within(client.done, 120_000, 'the build', server);
      assert.equal(res.code, 1, res.stderr);
      assert.deepEqual(errorLines(res.stderr), [errorLines(res.stderr)[0]], 'one error line');
      assert.match(errorLines(res.stderr)[0], /^error: pushing \S+ failed: .*; the registry refused it or could not be reached/);
    } finally {
      await startRegistry();
    }
    await assertNothingLeft(server, service, repo);
  });

  it('the git host stopped: the checkout fails with one line naming the host', async () => {
    const repo = repoWith('fault-githost', staticSite());
    const service = unique('fault-githost');
    stopGitHost();
    try {
      await eventually(async () => !(await gitHostUp()), 'the git host to stop');
      const res = await within(ssh(server, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service }))), 120_000, 'the build', server);
      assert.equal(res.code, 1, res.stderr);
      assert.deepEqual(errorLines(res.stderr), [errorLines(res.stderr)[0]], 'one error line');
      assert.match(errorLines(res.stderr)[0], /^error: cannot reach the host of ssh:\/\/\S+: .*Connection refused/);
    } finally {
      await startGitHost();
    }
    await assertNothingLeft(server, service, repo);
  });

  it('a full work dir: one line saying there is no space left in it, and no key file behind', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'buildbot-full-'));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=2m', 'tmpfs', dir]);
    const work = path.join(dir, 'work');
    mkdirSync(work);
    const full = await startServer({ workDir: work });
    try {
      const repo = repoWith('fault-full', staticSite());
      const service = unique('fault-full');
      execFileSync('sh', ['-c', `dd if=/dev/zero of=${dir}/filler bs=64k 2>/dev/null || true`]);
      const res = await within(ssh(full, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service }))), 120_000, 'the build', full);
      assert.equal(res.code, 1, res.stderr);
      assert.deepEqual(errorLines(res.stderr), [`error: no space left in ${work} (the work dir: clone caches and deploy keys); free space there or give the server a larger work dir, then run the build again`]);
      rmSync(path.join(dir, 'filler'));
      await assertNothingLeft(full, service, repo);
    } finally {
      await full.stop();
      execFileSync('umount', ['-l', dir]);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('SIGTERM within the grace period: the build finishes and is pushed; the server exits 0', async () => {
    const graceful = await startServer({ args: ['--shutdown-grace', '60'] });
    const repo = repoWith('fault-term', staticSite({ buildExtra: 'echo "build started"; sleep 3' }));
    const service = unique('fault-term');
    const client = startSsh(graceful, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
    await client.waitFor(/build started/);
    graceful.child.kill('SIGTERM');
    const res = await within(client.done, 120_000, 'the build', graceful);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(errorLines(res.stderr), []);
    assert.equal(await within(graceful.exited, 60_000, 'the server\'s exit', graceful), 0);
    assert.deepEqual(await registryTags(service), ['1.0.0']);
    assert.deepEqual(keyDirs(graceful.workDir), []);
    removeAll(graceful.workDir);
  });

  it('SIGTERM past the grace period: the build is cancelled with one line, the server exits 0, the next start builds at once', async () => {
    const impatient = await startServer({ args: ['--shutdown-grace', '1'] });
    const repo = repoWith('fault-termabort', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
    const service = unique('fault-termabort');
    const client = startSsh(impatient, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
    await client.waitFor(/long build started/);
    impatient.child.kill('SIGTERM');
    const res = await within(client.done, 60_000, 'the build', impatient);
    assert.equal(res.code, 130, res.stderr);
    assert.deepEqual(errorLines(res.stderr), ['error: build cancelled; its containers were removed']);
    assert.equal(await within(impatient.exited, 60_000, 'the server\'s exit', impatient), 0);
    const again = await startServer({ workDir: impatient.workDir });
    try {
      await assertNothingLeft(again, service, repo);
    } finally {
      await again.stop();
      removeAll(impatient.workDir);
    }
  });

  it('SIGKILL to the server: the next start removes its containers and key files, and the service builds again', async () => {
    const doomed = await startServer();
    const repo = repoWith('fault-kill', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
    const service = unique('fault-kill');
    const client = startSsh(doomed, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
    await client.waitFor(/long build started/);
    await doomed.stop('SIGKILL');
    const res = await within(client.done, 30_000, 'the client', doomed);
    assert.equal(res.code, 255, 'ssh says the connection was lost');
    assert.equal((await buildContainersOf('builder')).length, 1, 'the killed server left its builder');
    assert.equal(keyDirs(doomed.workDir).length, 1, 'and its deploy key');
    const next = await startServer({ workDir: doomed.workDir });
    try {
      assert.match(next.log(), /orphan-removed container=[0-9a-f]{12} build=\w+ service=fault-kill-/);
      assert.match(next.log(), /orphan-key-removed dir=\d+-/);
      // The dead server's service lock goes stale (20 s without a refresh): the next build may wait for that, not longer.
      await assertNothingLeft(next, service, repo, testDocker, true);
    } finally {
      await next.stop();
      removeAll(doomed.workDir);
    }
  });

  describe('with an engine of its own, restarted during build.sh', () => {
    let engine: PrivateEngine;
    let onEngine: ServerProcess;
    before(async () => {
      engine = await startPrivateEngine();
      await copyImages(engine.docker, [testEnv().busyboxImage]);
      onEngine = await startServer({ env: { DOCKER_HOST: engine.host } });
    });
    after(async () => {
      await onEngine?.stop();
      await engine?.dispose();
      if (onEngine) removeAll(onEngine.workDir);
    });

    it('a graceful restart during build.sh: the error says the engine stopped, and nothing is left once it is back', async () => {
      const repo = repoWith('fault-engine', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
      const service = unique('fault-engine');
      const client = startSsh(onEngine, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
      await client.waitFor(/long build started/);
      await engine.restart();
      const res = await within(client.done, 60_000, 'the build', onEngine);
      assert.equal(res.code, 1, res.stderr);
      assert.deepEqual(errorLines(res.stderr), [errorLines(res.stderr)[0]], 'one error line');
      // Which the server sees first is a race: the container's end (the engine stopping it) or the engine's
      // socket going away; both name the engine and say what to do, never "build.sh exited with code 137".
      assert.match(errorLines(res.stderr)[0], /^error: the Docker engine (stopped while running build\.sh and ended its container \(exit code 1\d\d\)|went away while running build\.sh \([^)]*\)); .*check that dockerd is running/);
      await onEngine.waitForLog(/ engine-back( |$)/m, 30_000);
      await assertNothingLeft(onEngine, service, repo, engine.docker);
    });
  });
});
