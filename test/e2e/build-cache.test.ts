import assert from 'node:assert/strict';
import { mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { removeUnusedCaches } from '../../src/pipeline/build-cache.js';
import { buildArgs, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { buildContainers, docker } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import type { Files } from '../helpers/repos.js';

/** A build.sh that counts its builds in a cache, and writes `bigMb` MB into it when asked. */
function counting(opts: { bigMb?: number; cacheLine?: string } = {}): Files {
  const env = testEnv();
  return {
    'build.sh': {
      mode: 0o755,
      content: [
        '#!/bin/sh',
        `#build_inside_docker_image=${env.busyboxImage}`,
        opts.cacheLine ?? '#build_cache=/cache /var/other/deep',
        'set -e',
        'n=$(cat /cache/count 2>/dev/null || echo 0)',
        'echo "cache count $n, other $(cat /var/other/deep/mark 2>/dev/null || echo none)"',
        'echo $((n + 1)) > /cache/count',
        'echo "$BUILDBOT_SERVICE_ID" > /var/other/deep/mark',
        opts.bigMb ? `dd if=/dev/zero of=/cache/big bs=1048576 count=${opts.bigMb} 2>/dev/null` : '',
        'echo ok > out.txt',
      ].join('\n') + '\n',
    },
    Dockerfile: `FROM ${env.busyboxImage}\nCOPY out.txt /out.txt\n`,
  };
}

/** The cache volumes of a service, as path -> volume name. */
async function cachesOf(service: string): Promise<Map<string, string>> {
  const { Volumes } = await docker.listVolumes({ filters: { label: [`io.buildbot.cache-of=${service}`] } });
  return new Map((Volumes ?? []).map((v) => [v.Labels['io.buildbot.cache-path'], v.Name]));
}

const allVolumes = async () => ((await docker.listVolumes()).Volumes ?? []).map((v) => v.Name).sort();
const count = (stdout: string) => /^cache count (\d+), other (\S+)$/m.exec(stdout)?.slice(1);

describe('build caches that outlive the build (#build_cache)', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();
  // Kept between builds by design; the suite's own go when it ends.
  after(async () => {
    const { Volumes } = await docker.listVolumes({ filters: { label: ['io.buildbot.cache-of'] } });
    for (const v of Volumes ?? []) if (/^cache-/.test(v.Labels['io.buildbot.cache-of'])) await docker.getVolume(v.Name).remove();
  });

  it('keeps a cache path between two builds of one service, never shows it to another service, and --no_build_cache / --reset_build_cache do what they say', async () => {
    const repo = repoWith('cache', counting());
    const a = unique('cache-a');
    const b = unique('cache-b');
    let tag = 0;
    const build = async (service: string, extra: string[] = []) => {
      const res = await runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: [`1.0.${tag++}`], extra }), work());
      assert.equal(res.code, 0, res.stderr);
      assert.deepEqual(await buildContainers(), [], 'no container left');
      return res;
    };

    assert.deepEqual(count((await build(a)).stdout), ['0', 'none']);
    assert.deepEqual(count((await build(a)).stdout), ['1', a], 'the second build of the service starts warm');
    const kept = await cachesOf(a);
    assert.deepEqual([...kept.keys()].sort(), ['/cache', '/var/other/deep'], 'one volume per path, labelled');

    assert.deepEqual(count((await build(b)).stdout), ['0', 'none'], 'another service never sees the caches of the first');
    assert.equal((await cachesOf(b)).size, 2);
    assert.ok([...(await cachesOf(b)).values()].every((name) => ![...kept.values()].includes(name)));

    const before = await allVolumes();
    const fresh = await build(a, ['--no_build_cache']);
    assert.deepEqual(count(fresh.stdout), ['0', 'none'], '--no_build_cache: fresh caches');
    assert.match(fresh.stdout, /^--no_build_cache: build\.sh runs with fresh caches at \/cache \/var\/other\/deep; the kept ones are left as they are$/m);
    assert.deepEqual(await allVolumes(), before, 'its fresh volumes went with the builder');
    assert.deepEqual(count((await build(a)).stdout), ['2', a], 'the kept caches were left as they were');

    const reset = await build(a, ['--reset_build_cache']);
    assert.match(reset.stdout, new RegExp(`^--reset_build_cache: 2 kept caches of ${a} removed; build\\.sh starts with fresh ones$`, 'm'));
    assert.deepEqual(count(reset.stdout), ['0', 'none'], '--reset_build_cache: emptied first');
    assert.deepEqual(count((await build(a)).stdout), ['1', a], 'and kept again after');
    assert.deepEqual(count((await build(b)).stdout), ['1', b], 'the other service\'s caches were not touched');
    assert.deepEqual((await allVolumes()).length, before.length);

    const both = await runCli(buildArgs({ service: a, repo: repo.url, revision: 'main', image: a, extra: ['--no_build_cache', '--reset_build_cache'] }), work());
    assert.equal(both.code, 2);
    assert.match(both.stderr, /^error: --no_build_cache and --reset_build_cache were both given; give one/m);
  });

  it('drops a cache that grew past the size bound after the build, with a line saying so, and the next build starts it empty', async () => {
    const service = unique('cache-big');
    const repo = repoWith('cache-big', counting({ bigMb: 3 }));
    const env = { BUILDBOT_BUILD_CACHE_MAX_MB: '2' };
    const res = await runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work(), env);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`^build cache /cache of ${service} dropped: the service's caches held 3\\.\\d MB, over the server's 2 MB \\(--build-cache-max-mb\\); the next build starts it empty$`, 'm'));
    assert.match(res.stdout.trimEnd().split('\n').at(-1)!, /^__build_result_meta /, 'the result line stays the last');
    assert.deepEqual([...(await cachesOf(service)).keys()], ['/var/other/deep'], 'the small cache is kept, the large one gone');

    repo.commit(counting());
    const next = await runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['1.0.1'] }), work(), env);
    assert.equal(next.code, 0, next.stderr);
    assert.deepEqual(count(next.stdout), ['0', service], 'the dropped cache starts empty, the kept one warm');
    assert.doesNotMatch(next.stdout, /dropped/);
    assert.deepEqual(await buildContainers(), []);
  });

  it('refuses a #build_cache path that is relative, has "..", or covers /project, with one error line and no volume', async () => {
    for (const [line, error] of [
      ['#build_cache=cache', /is not absolute/],
      ['#build_cache=/root/../etc', /is not a plain absolute path/],
      ['#build_cache=/project/node_modules', /is or is inside \/project/],
    ] as const) {
      const service = unique('cache-bad');
      const repo = repoWith('cache-bad', counting({ cacheLine: line }));
      const res = await runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work());
      assert.equal(res.code, 1, res.stderr);
      const errorsSeen = res.stderr.split('\n').filter((l) => l.startsWith('error:'));
      assert.equal(errorsSeen.length, 1, res.stderr);
      assert.match(errorsSeen[0], /^error: the #build_cache line of build\.sh cannot be used: /);
      assert.match(errorsSeen[0], error);
      assert.equal((await cachesOf(service)).size, 0);
    }
    assert.deepEqual(await buildContainers(), []);
  });

  it('removes caches no build used for --build-cache-days, and keeps the others', async () => {
    const dir = path.join(work(), '.build-caches');
    mkdirSync(dir, { recursive: true });
    const old = unique('buildbot-cache-old');
    const recent = unique('buildbot-cache-recent');
    for (const name of [old, recent]) {
      await docker.createVolume({ Name: name, Labels: { 'io.buildbot.cache-of': 'expiry-test', 'io.buildbot.cache-path': '/cache' } });
      writeFileSync(path.join(dir, name), '');
    }
    const twentyDaysAgo = new Date(Date.now() - 20 * 86_400_000);
    utimesSync(path.join(dir, old), twentyDaysAgo, twentyDaysAgo);
    const logged: string[] = [];
    const removed = await removeUnusedCaches(docker, { workDir: work() }, 14, (event, fields) => logged.push(`${event} ${JSON.stringify(fields)}`));
    assert.equal(removed, 1, logged.join('\n'));
    const left = (await allVolumes());
    assert.ok(!left.includes(old), 'the cache unused for 20 days went');
    assert.ok(left.includes(recent), 'the recently used one stayed');
    assert.match(logged.join('\n'), /build-cache-expired .*"unused_days":20/);
    await docker.getVolume(recent).remove();
  });
});
