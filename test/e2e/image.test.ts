import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { createContextFilter } from '../../src/context/filter.js';
import { packDirectory } from '../../src/context/tar.js';
import { followStream } from '../../src/docker/engine.js';
import { buildArgs, unique } from '../helpers/build.js';
import { ROOT } from '../helpers/cli.js';
import { docker } from '../helpers/docker.js';
import { engineSocket, keyBase64, keyPath, loginCmd, testEnv } from '../helpers/env.js';
import { registryTags } from '../helpers/registry.js';
import { staticSite } from '../helpers/repos.js';
import { suiteRepos } from '../helpers/fixtures.js';
import { ssh } from '../helpers/server.js';

const IMAGE = 'buildbot-test/server:latest';
const BASE = 'buildbot-test/node-base:2';

const freePort = () => new Promise<number>((resolve) => {
  const s = net.createServer().listen(0, '127.0.0.1', () => {
    const { port } = s.address() as net.AddressInfo;
    s.close(() => resolve(port));
  });
});

describe('the server\'s Docker image', () => {
  let skip: string | undefined;
  let container: import('dockerode').Container | undefined;
  let port = 0;
  const repoWith = suiteRepos();

  before(async () => {
    // No public base image can be pulled here: the test makes one (debootstrap + this machine's Node.js).
    const base = spawnSync('bash', [path.join(ROOT, 'test/env/node-base-image.sh')], { encoding: 'utf8', stdio: ['ignore', 'inherit', 'pipe'] });
    if (base.status === 3) {
      skip = `cannot make a Debian base image with Node.js on this machine: ${base.stderr.trim()}`;
      return;
    }
    assert.equal(base.status, 0, base.stderr);
    // The project's own context code sends the project: .dockerignore applied, streamed.
    const context = packDirectory(ROOT, createContextFilter(readFileSync(path.join(ROOT, '.dockerignore'), 'utf8')));
    const stream = await docker.buildImage(context, { t: IMAGE, buildargs: { BASE_IMAGE: BASE }, forcerm: true } as object);
    await followStream(stream, () => {});

    port = await freePort();
    container = await docker.createContainer({
      Image: IMAGE,
      Labels: { 'buildbot.test': '1' },
      // The HTTP API on a free port: with host networking the image's 0.0.0.0:8080 could be taken.
      Env: [`BUILDBOT_LISTEN=127.0.0.1:${port}`, 'BUILDBOT_HTTP_LISTEN=127.0.0.1:0', `SSH_PUBKEY_IN_INITIATE_BUILDS=${readFileSync(keyPath('client_ed25519.pub'), 'utf8').trim()}`],
      // Host networking: the test registry and git host listen on this machine's loopback.
      HostConfig: { NetworkMode: 'host', Binds: [`${engineSocket()}:/var/run/docker.sock`] },
    });
    await container.start();
    for (let i = 0; i < 50; i++) {
      const logs = (await container.logs({ stderr: true, stdout: true })).toString();
      if (/ listening addr=/.test(logs)) break;
      await new Promise((r) => setTimeout(r, 200));
    }
  });

  after(async () => {
    await container?.remove({ force: true }).catch(() => undefined);
  });

  it('builds over SSH from inside its container, with the host\'s engine', async (t) => {
    if (skip) return t.skip(skip);
    const repo = repoWith('img-site', staticSite());
    const image = unique('img-site');
    const res = await ssh({ port }, [quote(['buildbot.sh', ...buildArgs({ service: image, repo: repo.url, revision: 'main', image })])]);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
  });

  it('runs buildbot.sh through docker exec, secrets from the environment', async (t) => {
    if (skip) return t.skip(skip);
    const repo = repoWith('img-exec', staticSite());
    const image = unique('img-exec');
    const args = buildArgs({ service: image, repo: repo.url, revision: 'main', image, key: null, login: null });
    const id = (await container!.inspect()).Id;
    const res = spawnSync('docker', ['exec', '-e', `BUILDBOT_REPO_AUTH_KEY=${keyBase64()}`, '-e', `BUILDBOT_DOCKER_LOGIN_CMD=${loginCmd()}`, id, 'buildbot.sh', ...args], { encoding: 'utf8' });
    assert.equal(res.status, 0, res.stderr);
    assert.match(res.stdout, /^__build_result_meta /m);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
    assert.ok(!res.stdout.includes(testEnv().registryPassword));
  });

  it('stops cleanly on docker stop', async (t) => {
    if (skip) return t.skip(skip);
    await container!.stop({ t: 35 });
    assert.equal((await container!.inspect()).State.ExitCode, 0);
    const logs = (await container!.logs({ stdout: true, stderr: true })).toString();
    assert.match(logs, / listening addr=\S+ .*ssh-crypto=native$/m, 'the image compiles ssh2\'s native addon');
    assert.match(logs, / signal signal=SIGTERM/);
    assert.match(logs, / stopped/);
  });
});
