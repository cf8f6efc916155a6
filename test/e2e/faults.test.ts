import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { buildArgs, unique } from '../helpers/build.js';
import { buildContainers, buildContainersOf } from '../helpers/docker.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { registryTags } from '../helpers/registry.js';
import { removeAll, staticSite, type GitRepo } from '../helpers/repos.js';
import { ssh, startServer, startSsh, type ServerProcess } from '../helpers/server.js';
import { startTcpRelay } from '../helpers/tcp-relay.js';

/** The command line a CI script would send: the words quoted for the server's shell-style split. */
const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

const keyDirs = (workDir: string) => {
  try {
    return readdirSync(path.join(workDir, '.keys'));
  } catch {
    return [];
  }
};

/** The `error: …` lines a user saw: every fault ends with exactly one. */
export const errorLines = (stderr: string) => stderr.split('\n').filter((l) => l.startsWith('error: '));

/**
 * What every fault must leave: no container, no key file, nothing in the registry, and the
 * service free (the next build of it, once the repository builds, succeeds without waiting for a lock).
 */
async function assertNothingLeft(server: ServerProcess, service: string, repo: GitRepo): Promise<void> {
  await eventually(async () => (await buildContainers()).length === 0, 'removal of every build container', 20_000);
  assert.deepEqual(keyDirs(server.workDir), [], 'no deploy key file remains');
  assert.deepEqual(await registryTags(service), [], 'nothing was pushed');
  repo.commit(staticSite(), 'a build that succeeds');
  const next = await ssh(server, remote(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: ['next'] })));
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
});
