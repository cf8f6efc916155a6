import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { testEnv } from '../helpers/env.js';
import { buildArgs, unique } from '../helpers/build.js';
import { runCli, startCli } from '../helpers/cli.js';
import { eventually, suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import { allContainerIds, buildContainers, buildContainersOf, processesRunning } from '../helpers/docker.js';
import { registryTags } from '../helpers/registry.js';
import { staticSite } from '../helpers/repos.js';

const keyDirs = (dir: string) => readdirSync(path.join(dir, '.keys')).sort();

describe('buildbot.sh concurrency and cancellation', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  it('serializes two builds of one service, saying so, and both succeed', async () => {
    const repo = repoWith('serial', staticSite({ buildExtra: 'echo "build.sh running"; sleep 2' }));
    const service = unique('serial');
    const first = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['1'] }), work());
    await first.waitFor(/build\.sh running/);
    const second = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['2'] }), work());
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

    const run = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work());
    await run.waitFor(/long build started/);
    assert.equal((await buildContainersOf('builder')).length, 1, 'the builder container is running');
    const t0 = Date.now();
    run.child.kill('SIGINT');
    const res = await run.done;
    assert.equal(res.code, 130);
    assert.match(res.stderr, /^error: build cancelled/m);
    assert.ok(Date.now() - t0 < 10_000, 'cancelled within seconds');
    assert.deepEqual(await buildContainers(), []);
    assert.deepEqual(await registryTags(service), []);
    assert.deepEqual(keyDirs(work()), [], 'the key file is removed');

    // The service lock is free again: a new build does not wait.
    const repo2 = repoWith('abort-after', staticSite());
    const next = await runCli(buildArgs({ service, repo: repo2.url, revision: 'main', image: service }), work());
    assert.equal(next.code, 0, next.stderr);
    assert.doesNotMatch(next.stdout, /waiting for it to finish/);
  });

  it('Ctrl-C during docker build stops the running Dockerfile step and leaves no container', async () => {
    // A sleep no other test runs, so its process can be told apart.
    const step = ['sleep', `${1000 + (process.pid % 1000)}`];
    const repo = repoWith('abortimage', { Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo "image step started" && ${step.join(' ')}\n` });
    const service = unique('abortimage');
    const before = await allContainerIds();
    const run = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work());
    await run.waitFor(/^image step started$/m);
    await eventually(() => processesRunning(step).length === 1, 'the RUN step to run');
    run.child.kill('SIGINT');
    const res = await run.done;
    assert.equal(res.code, 130);
    await eventually(() => processesRunning(step).length === 0, 'the RUN step to stop');
    assert.deepEqual(await allContainerIds(), before);
    assert.deepEqual(await registryTags(service), []);
  });
});
