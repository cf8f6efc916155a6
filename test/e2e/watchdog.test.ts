import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import { buildArgs, unique } from '../helpers/build.js';
import { runCli, startCli, type RunResult } from '../helpers/cli.js';
import { registryTags } from '../helpers/registry.js';
import { ssh, startServer } from '../helpers/server.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import { buildContainers, pulledFiles } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { EngineRelay } from '../helpers/relay.js';
import { staticSite } from '../helpers/repos.js';

/** The run's result, or a failure (and the process killed) if it has not ended within ms. */
async function within(run: ReturnType<typeof startCli>, ms: number, what: string): Promise<RunResult> {
  let timer: NodeJS.Timeout | undefined;
  const hung = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      run.child.kill('SIGKILL');
      reject(new Error(`${what} hung: no exit within ${ms} ms; output so far:\n${run.stdout()}`));
    }, ms);
  });
  try {
    return await Promise.race([run.done, hung]);
  } finally {
    clearTimeout(timer);
  }
}

/** Short, so that the file stays within a minute or two; the default is 600. */
const STALL = 4;

const errorLines = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('error:'));
const quote = (word: string) => `'${word.replace(/'/g, "'\\''")}'`;

/** What a build that ended leaves: no container, no key file (the service lock is checked by building again). */
async function assertNothingLeft(): Promise<void> {
  assert.deepEqual(await buildContainers(), [], 'no container of a build is left');
  assert.deepEqual(readdirSync(path.join(workDir(), '.keys')), [], 'no key file is left');
}
let workDir = () => '';

describe('no build hangs', () => {
  const work = suiteWorkDir();
  workDir = work;
  const repoWith = suiteRepos();

  it('the image step reads a large /project and its .dockerignore one after the other, rebuild after rebuild', async () => {
    // 4 MB in /project, far past the socket buffers (the hang showed at ~270 KB): the builder's
    // archive of /project and of /project/.dockerignore, asked for at once, waited on each other.
    const files = staticSite({ buildExtra: 'head -c 4000000 /dev/urandom > blob.bin; printf "blob.bin\\n" > .dockerignore; echo kept > kept.txt' });
    files.Dockerfile = `${files.Dockerfile as string}COPY . /ctx\n`;
    const repo = repoWith('bigproject', files);
    const service = unique('bigproject');
    // Through a relay that holds the .dockerignore request back a little, as a busy connection
    // might: asked for together, /project would reach the engine first and lock the builder.
    const relay = await EngineRelay.start();
    relay.delay(/archive\?path=%2Fproject%2F\.dockerignore/, 300);
    try {
      for (let round = 1; round <= 3; round++) {
        const run = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: [`${round}.0`] }), work(), { DOCKER_HOST: relay.dockerHost });
        const res = await within(run, 45_000, `build ${round} of the same revision`);
        assert.equal(res.code, 0, res.stderr);
      }
    } finally {
      await relay.close();
    }
    const archives = relay.requests.filter((r) => r.startsWith('GET ') && r.includes('/archive?'));
    // Per build, one after the other: the .dockerignore, the Dockerfile (to learn what the context
    // needs: `COPY .` needs all of it), then /project.
    const paths = archives.map((r) => decodeURIComponent(/path=([^&\s]+)/.exec(r)?.[1] ?? ''));
    assert.deepEqual(paths, Array.from({ length: 3 }, () => ['/project/.dockerignore', '/project/Dockerfile', '/project']).flat(), `three archive requests a build:\n${archives.join('\n')}`);
    assert.deepEqual(await buildContainers(), []);
    // The .dockerignore that build.sh wrote was applied: the 4 MB stayed out of the image.
    const context = await pulledFiles(`${testEnv().registry}/${service}:3.0`, '/ctx');
    assert.equal(context.get('ctx/kept.txt'), 'kept\n');
    assert.ok(!context.has('ctx/blob.bin'), 'blob.bin was left out of the context');
  });

  it('an engine that stops answering in the middle of a push ends the build with one ESTALLED line; nothing is left and the next build works', async () => {
    const repo = repoWith('stallpush', staticSite());
    const service = unique('stallpush');
    const relay = await EngineRelay.start();
    try {
      // The push's answer starts, then nothing more comes, and nothing is closed: a silent peer.
      const frozen = relay.freeze(/^POST \S*\/images\/\S+\/push\?/, 200);
      const run = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['1.0'] }), work(),
        { DOCKER_HOST: relay.dockerHost, BUILDBOT_STALL_TIMEOUT: String(STALL) });
      const res = await within(run, 60_000, 'the build with a frozen push');
      await frozen;
      assert.equal(res.code, 1, res.stderr);
      const ref = `${testEnv().registry}/${service}:1.0`;
      assert.deepEqual(errorLines(res.stderr), [
        `error: the engine sent nothing for ${STALL} s while pushing ${ref}; check the registry ${testEnv().registry} and the engine with docker info`,
      ]);
      assert.match(res.stdout, /# failed with exit code 1$/m);
    } finally {
      await relay.close();
    }
    await assertNothingLeft();
    const next = await within(startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['1.1'] }), work()), 60_000, 'the next build');
    assert.equal(next.code, 0, next.stderr);
    assert.doesNotMatch(next.stdout, /waiting for it to finish/, 'the service lock was released');
  });

  it('while build.sh runs silently the engine is pinged; a ping left unanswered ends the build', async () => {
    const repo = repoWith('stallping', staticSite({ buildExtra: 'echo "quiet build started"; sleep 60' }));
    const service = unique('stallping');
    const relay = await EngineRelay.start();
    try {
      const run = startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work(),
        { DOCKER_HOST: relay.dockerHost, BUILDBOT_STALL_TIMEOUT: String(STALL) });
      await run.waitFor(/quiet build started/);
      // Silence alone is fine: two stall times pass with build.sh printing nothing.
      await sleep(2 * STALL * 1000);
      assert.equal(run.child.exitCode, null, 'a silent build.sh is not a stall');
      const frozen = relay.freeze(/^GET \S*\/_ping/, 0);
      const res = await within(run, 60_000, 'the build with a frozen engine');
      await frozen;
      assert.equal(res.code, 1, res.stderr);
      assert.deepEqual(errorLines(res.stderr), [
        `error: the engine answered no ping for ${STALL} s while running build.sh; check the engine with docker info`,
      ]);
    } finally {
      await relay.close();
    }
    await assertNothingLeft();
  });

  it('a build past --timeout is cancelled with one line saying so, exit 124, and its containers removed', async () => {
    const repo = repoWith('timelimit', staticSite({ buildExtra: 'echo "slow build started"; sleep 60' }));
    const service = unique('timelimit');
    const t0 = Date.now();
    const res = await within(startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, extra: ['--timeout', '4'] }), work()), 60_000, 'the build past its limit');
    assert.equal(res.code, 124, res.stderr);
    assert.match(res.stdout, /slow build started/);
    assert.deepEqual(errorLines(res.stderr), [
      'error: the build ran past the time limit of 4 s that --timeout set and was cancelled; its containers were removed. Make the build faster, or give a larger --timeout (up to 3600)',
    ]);
    assert.ok(Date.now() - t0 < 30_000, 'cancelled at the limit, not at the end of build.sh');
    await assertNothingLeft();
    assert.deepEqual(await registryTags(service), []);
  });

  it('the server setting is the limit: BUILDBOT_BUILD_TIMEOUT ends a build, and a larger --timeout is a usage error', async () => {
    const repo = repoWith('serverlimit', staticSite({ buildExtra: 'sleep 60' }));
    const service = unique('serverlimit');
    const tooLong = await runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, extra: ['--timeout', '11'] }), work(), { BUILDBOT_BUILD_TIMEOUT: '10' });
    assert.equal(tooLong.code, 2);
    assert.deepEqual(errorLines(tooLong.stderr), [
      "error: --timeout 11 is more than this server's time limit of 10 s (its --build-timeout); --timeout may only lower the limit: give 10 or less",
    ]);
    assert.doesNotMatch(tooLong.stdout, /# login/, 'refused before the build starts');
    const res = await within(startCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work(), { BUILDBOT_BUILD_TIMEOUT: '4' }), 60_000, 'the build past the server limit');
    assert.equal(res.code, 124, res.stderr);
    assert.match(res.stderr, /^error: the build ran past the time limit of 4 s \(the build timeout\) and was cancelled/m);
    await assertNothingLeft();
  });

  it('over SSH and HTTP: --timeout above the server\'s --build-timeout and the server-only settings are refused', async () => {
    const token = 'watchdog-token-5d1c0e7a9b3f';
    const server = await startServer({ args: ['--build-timeout', '30', '--stall-timeout', '20', '--api-token', token] });
    try {
      const args = buildArgs({ service: unique('sshlimit'), repo: 'ssh://git@example.invalid/r.git', revision: 'main', image: 'x' });
      const high = await ssh(server, ['buildbot.sh', ...args.map(quote), '--timeout', '31']);
      assert.equal(high.code, 2);
      assert.match(high.stderr, /^error: --timeout 31 is more than this server's time limit of 30 s/m);
      const setting = await ssh(server, ['buildbot.sh', ...args.map(quote), '--stall-timeout', '5']);
      assert.equal(setting.code, 2);
      assert.match(setting.stderr, /^error: --stall-timeout is a setting of the server/m);
      const res = await fetch(`http://127.0.0.1:${server.httpPort}/api/v1/builds`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ service_id: unique('httplimit'), repo: 'ssh://git@example.invalid/r.git', revision: 'main', image: `${testEnv().registry}/x`, tags: ['1'], timeout: 31 }),
      });
      assert.equal(res.status, 400);
      const { error } = (await res.json()) as { error: { code: string; field: string; message: string } };
      assert.deepEqual([error.code, error.field], ['EUSAGE', 'timeout']);
      assert.match(error.message, /^"timeout" 31 is more than this server's time limit of 30 s/);
    } finally {
      await server.stop();
    }
  });
});
