import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, it } from 'node:test';
import { testEnv } from '../helpers/env.js';
import { buildArgs, unique } from '../helpers/build.js';
import { newWorkDir, runCli, startCli } from '../helpers/cli.js';
import { allContainerIds, buildContainers } from '../helpers/docker.js';
import { registryTags } from '../helpers/registry.js';
import { GitRepo, removeAll, staticSite } from '../helpers/repos.js';

const keyDirs = (workDir: string) => readdirSync(path.join(workDir, '.keys')).sort();

async function eventually(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(200);
  }
}

describe('buildbot.sh concurrency and cancellation', () => {
  let workDir: string;
  const repos: GitRepo[] = [];
  before(() => {
    workDir = newWorkDir();
  });
  after(() => {
    repos.forEach((r) => r.dispose());
    removeAll(workDir);
  });
  const repoWith = (name: string, files: Parameters<GitRepo['commit']>[0]) => {
    const repo = new GitRepo(unique(name));
    repos.push(repo);
    repo.commit(files);
    return repo;
  };

  it('serializes two builds of one service, saying so, and both succeed', async () => {
    const repo = repoWith('serial', staticSite({ buildExtra: 'echo "build.sh running"; sleep 2' }));
    const service = unique('serial');
    const first = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['1'] }), workDir);
    await first.waitFor(/build\.sh running/);
    const second = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['2'] }), workDir);
    const [a, b] = await Promise.all([first.done, second.done]);
    assert.equal(a.code, 0, a.stderr);
    assert.equal(b.code, 0, b.stderr);
    assert.match(b.stdout, /another build of service .* is running; waiting for it to finish/);
    assert.doesNotMatch(a.stdout, /waiting for it to finish/);
    // The second started its checkout only after the first had finished.
    assert.ok(b.stdout.indexOf('waiting for it to finish') < b.stdout.indexOf('checked out'));
    assert.deepEqual(await registryTags(service), ['1', '2']);
  });

  it('Ctrl-C during build.sh kills and removes its container, pushes nothing and releases the service', async () => {
    const repo = repoWith('abort', staticSite({ buildExtra: 'echo "long build started"; sleep 120' }));
    const service = unique('abort');

    const run = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), workDir);
    await run.waitFor(/long build started/);
    assert.equal((await buildContainers()).length, 1, 'the builder container is running');
    const t0 = Date.now();
    run.child.kill('SIGINT');
    const res = await run.done;
    assert.equal(res.code, 130);
    assert.match(res.stderr, /^error: build cancelled/m);
    assert.ok(Date.now() - t0 < 10_000, 'cancelled within seconds');
    assert.deepEqual(await buildContainers(), []);
    assert.deepEqual(await registryTags(service), []);
    assert.deepEqual(keyDirs(workDir), [], 'the key file is removed');

    // The service lock is free again: a new build does not wait.
    const repo2 = repoWith('abort-after', staticSite());
    const next = await runCli(buildArgs({ service, repo: repo2.url, revision: 'main', image: service }), workDir);
    assert.equal(next.code, 0, next.stderr);
    assert.doesNotMatch(next.stdout, /waiting for it to finish/);
  });

  it('Ctrl-C during docker build leaves no intermediate container', async () => {
    const repo = repoWith('abortimage', { Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo "image step started" && sleep 120\n` });
    const service = unique('abortimage');
    const before = await allContainerIds();
    const run = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), workDir);
    await run.waitFor(/image step started/);
    run.child.kill('SIGINT');
    const res = await run.done;
    assert.equal(res.code, 130);
    await eventually(async () => JSON.stringify(await allContainerIds()) === JSON.stringify(before), 'removal of the intermediate container');
    assert.deepEqual(await registryTags(service), []);
  });
});
