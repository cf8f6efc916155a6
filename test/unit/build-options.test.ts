import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { credentialsFor } from '../../src/docker/buildkit.js';
import { requestFromJson } from '../../src/fronts/http/body.js';
import { loginSecretsFromArgv } from '../../src/request/docker-login.js';
import { parseBuildCommand } from '../../src/request/parse.js';
import type { BuildRequest } from '../../src/request/types.js';

const base = ['--service_id', 'api', '--repo', 'git@github.com:org/api.git', '--revision', 'abc1234', '--image', 'r.io/api', '--tag', '1'];
const request = async (args: string[]) => ((await parseBuildCommand([...base, ...args], {})) as { request: BuildRequest }).request;
const rejects = (args: string[], message: RegExp) =>
  assert.rejects(parseBuildCommand([...base, ...args], {}), (err: Error & { exitCode: number }) => message.test(err.message) && err.exitCode === 2);

describe('build options', () => {
  it('defaults to the root Dockerfile and nothing else', async () => {
    const { build } = await request([]);
    assert.deepEqual({ ...build, args: { ...build.args }, secrets: { ...build.secrets } }, { args: {}, target: undefined, platform: undefined, dockerfile: 'Dockerfile', pull: false, cacheFrom: [], noCache: false, secrets: {}, noBuildCache: false, resetBuildCache: false });
  });

  it('reads --no_build_cache and --reset_build_cache, and refuses both at once', async () => {
    assert.equal((await request(['--no_build_cache'])).build.noBuildCache, true);
    assert.equal((await request(['--reset_build_cache'])).build.resetBuildCache, true);
    await rejects(['--no_build_cache', '--reset_build_cache'], /--no_build_cache and --reset_build_cache were both given; give one/);
  });

  it('reads every option, switches included, wherever they stand', async () => {
    const r = await request([
      '--build_arg', 'A=1', '--pull', '--build_arg', 'B=x=y', '--build_arg', 'EMPTY=', '--target', 'final', '--platform', 'linux/arm/v7',
      '--dockerfile', './docker//Dockerfile.prod', '--no_cache', '--cache_from', 'R.io/api:latest,r.io/api:1', '--cache_from', 'r.io/api:latest',
      '--build_secret', 'npm=s3cr3t=x',
    ]);
    assert.deepEqual({ ...r.build.args }, { A: '1', B: 'x=y', EMPTY: '' });
    assert.equal(r.build.target, 'final');
    assert.equal(r.build.platform, 'linux/arm/v7');
    assert.equal(r.build.dockerfile, 'docker/Dockerfile.prod');
    assert.ok(r.build.pull && r.build.noCache);
    assert.deepEqual(r.build.cacheFrom, ['r.io/api:latest', 'r.io/api:1']);
    assert.deepEqual({ ...r.build.secrets }, { npm: 's3cr3t=x' });
    assert.ok(r.secrets.includes('s3cr3t=x'), 'a build secret is redacted');
    assert.equal(r.tags[0], '1', 'a switch does not take the next word');
  });

  it('refuses what docker build would not take, or what would leave the repository', async () => {
    await rejects(['--build_arg', 'NOVALUE'], /--build_arg "NOVALUE" has no "="; give NAME=VALUE/);
    await rejects(['--build_arg', '1A=x'], /--build_arg: the name before "=" is not valid/);
    await rejects(['--build_arg', 'A=1', '--build_arg', 'A=2'], /--build_arg "A" was given twice/);
    await rejects(['--dockerfile', '../x/Dockerfile'], /has a "\.\." part/);
    await rejects(['--dockerfile', '/etc/passwd'], /is absolute/);
    await rejects(['--dockerfile', 'a/../../b'], /has a "\.\." part/);
    await rejects(['--dockerfile', '.git/config'], /names no file of the repository/);
    await rejects(['--target', 'bad stage'], /is not a stage name/);
    await rejects(['--platform', 'linux/amd64,linux/arm64'], /is not one platform/);
    await rejects(['--cache_from', 'Cache/x'], /--cache_from "Cache\/x".*capital letters/);
    await rejects(['--target', 'a', '--target', 'b'], /--target was given more than once/);
    await assert.rejects(parseBuildCommand([...base, '--build_secret', 'hunter-two'], {}), (err: Error) => !err.message.includes('hunter'));
  });

  it('takes the same options in an HTTP body', async () => {
    const r = await requestFromJson({
      service_id: 'api', repo: 'git@github.com:org/api.git', revision: 'main', image: 'r.io/api', tags: ['1'],
      build_arg: ['A=1', 'B=2'], target: 'final', dockerfile: 'docker/Dockerfile', pull: true, no_cache: false, cache_from: ['r.io/api:1'], build_secret: ['t=hunter-two'],
    });
    assert.deepEqual({ ...r.build.args }, { A: '1', B: '2' });
    assert.deepEqual([r.build.target, r.build.dockerfile, r.build.pull, r.build.noCache, r.build.cacheFrom], ['final', 'docker/Dockerfile', true, false, ['r.io/api:1']]);
    assert.ok(r.secrets.includes('hunter-two'));
  });

  it('finds build secrets in raw arguments', () => {
    assert.ok(loginSecretsFromArgv(['--build_secret', 'id=hunter-two']).includes('hunter-two'));
    assert.ok(loginSecretsFromArgv(['--build_secret=id=hunter-two']).includes('hunter-two'));
  });
});

describe('BuildKit credential answers', () => {
  const answers = { registry: 'r.io:5000', login: { username: 'u', password: 'p' }, secrets: new Map() };
  it('answers only for the push registry, by the normalizer\'s rule', () => {
    assert.deepEqual(credentialsFor('r.io:5000', answers), { Username: 'u', Secret: 'p' });
    assert.deepEqual(credentialsFor('R.IO:5000', answers), { Username: 'u', Secret: 'p' });
    for (const host of ['r.io', 'other.io:5000', 'registry-1.docker.io', '', 'r.io:5000/evil']) assert.deepEqual(credentialsFor(host, answers), {}, host);
    const hub = { ...answers, registry: 'docker.io' };
    assert.deepEqual(credentialsFor('registry-1.docker.io', hub), { Username: 'u', Secret: 'p' });
    assert.deepEqual(credentialsFor('r.io:5000', { ...answers, login: undefined }), {});
  });
});
