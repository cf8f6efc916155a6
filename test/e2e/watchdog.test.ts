import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildArgs, unique } from '../helpers/build.js';
import { startCli, type RunResult } from '../helpers/cli.js';
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

describe('no build hangs', () => {
  const work = suiteWorkDir();
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
    assert.equal(archives.length, 6, `two archive requests a build:\n${archives.join('\n')}`);
    assert.deepEqual(await buildContainers(), []);
    // The .dockerignore that build.sh wrote was applied: the 4 MB stayed out of the image.
    const context = await pulledFiles(`${testEnv().registry}/${service}:3.0`, '/ctx');
    assert.equal(context.get('ctx/kept.txt'), 'kept\n');
    assert.ok(!context.has('ctx/blob.bin'), 'blob.bin was left out of the context');
  });
});
