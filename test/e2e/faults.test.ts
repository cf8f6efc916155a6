import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync } from 'node:fs';
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

/** The `error: …` lines a user saw: every fault ends with exactly one. */
export const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('error: '));

/**
 * What every fault must leave: no container, no key file, nothing in the registry, and the
 * service free (the next build of it, once the repository builds, succeeds without waiting for a lock).
 */
async function assertNothingLeft(server: ServerProcess, service: string, repo: GitRepo, docker: Docker = testDocker): Promise<void> {
  const left = () => docker.listContainers({ all: true, filters: { label: ['io.buildbot.build'] } });
  await eventually(async () => (await left()).length === 0, 'removal of every build container', 30_000);
  assert.deepEqual(keyDirs(server.workDir), [], 'no deploy key file remains');
  assert.deepEqual(await registryTags(service), [], 'nothing was pushed');
  repo.commit(staticSite(), 'a build that succeeds');
  const next = await within(ssh(server, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['next'] }))), 120_000, 'the next build', server);
  assert.equal(next.code, 0, `the next build of the service succeeds:\n${next.stderr}`);
  assert.doesNotMatch(next.stdout, /waiting for it to finish/, 'the service lock was released');
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

  it('the engine cut off during build.sh: one error line, and the removal retried until the engine is back', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'buildbot-relay-'));
    const relay = await startSocketRelay(engineSocket(), path.join(dir, 'engine.sock'));
    const cutOff = await startServer({ env: { DOCKER_HOST: `unix://${relay.path}` } });
    try {
      const repo = repoWith('fault-enginecut', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
      const service = unique('fault-enginecut');
      const client = startSsh(cutOff, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service })));
      await client.waitFor(/long build started/);
      await relay.cut();
      const res = await within(client.done, 60_000, 'the build', cutOff);
      assert.equal(res.code, 1, res.stderr);
      assert.deepEqual(errorLines(res.stderr), [errorLines(res.stderr)[0]], 'one error line');
      assert.match(errorLines(res.stderr)[0], /^error: the Docker engine went away while running build\.sh \(its connection was (cut|closed)\); .*check that dockerd is running/);
      await cutOff.waitForLog(/ cleanup-retry container=[0-9a-f]{12} build=\w+ attempt=1 /);
      await cutOff.waitForLog(/ engine-down /);
      assert.equal((await buildContainersOf('builder')).length, 1, 'the builder outlived the cut, so far');
      await relay.restore();
      await cutOff.waitForLog(/ engine-back$/m);
      await cutOff.waitForLog(/ (cleanup-done container=[0-9a-f]{12} build=\w+ attempts=\d+|orphan-removed container=[0-9a-f]{12})/);
      await assertNothingLeft(cutOff, service, repo);
    } finally {
      await cutOff.stop();
      await relay.cut();
      removeAll(dir, cutOff.workDir);
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
      assert.match(errorLines(res.stderr)[0], /^error: the Docker engine stopped while running build\.sh and ended its container \(exit code 1\d\d\); .*check that dockerd is running/);
      await onEngine.waitForLog(/ engine-back$/m, 30_000);
      await assertNothingLeft(onEngine, service, repo, engine.docker);
    });
  });
});
