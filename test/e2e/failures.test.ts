import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { keyBase64, keyPath, loginCmd, testEnv } from '../helpers/env.js';
import { assertNoSecrets, buildArgs, headers, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import { allContainerIds, buildContainers } from '../helpers/docker.js';
import { registryTags } from '../helpers/registry.js';
import { staticSite } from '../helpers/repos.js';

describe('buildbot.sh failures: the right exit code, a clear error, nothing pushed, nothing left', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  it('a failing build.sh ends the build with its exit code and its stderr, and nothing is pushed', async () => {
    const repo = repoWith('failbuild', staticSite({ buildExtra: 'echo "compiler says no" >&2; exit 3' }));
    const image = unique('failbuild');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 3);
    assert.match(res.stderr, /compiler says no/);
    assert.match(res.stderr, /^error: build\.sh exited with code 3/m);
    assert.deepEqual(await registryTags(image), []);
    assert.deepEqual(await buildContainers(), []);
    assertNoSecrets(res.stdout, res.stderr);
  });

  it('a failing in-image test ends the build with its exit code, and nothing is pushed', async () => {
    const repo = repoWith('failtest', staticSite({ testLine: '#test_in_container_entrypoint=sh -c "echo checking; exit 4"' }));
    const image = unique('failtest');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 4);
    assert.match(res.stdout, /checking/);
    assert.match(res.stderr, /^error: the in-image test exited with code 4; nothing was pushed/m);
    assert.match(res.stdout, /\| # test: sh -c 'echo checking; exit 4'$/m, 'the header quotes the command as a shell would need it');
    assert.deepEqual(headers(res.stdout).slice(-1), ['test']);
    assert.deepEqual(await registryTags(image), []);
    assert.deepEqual(await buildContainers(), []);
  });

  it('a wrong registry password fails before anything is cloned, and the password is not echoed', async () => {
    const repo = repoWith('badpass', staticSite());
    const image = unique('badpass');
    const wrong = 'not-the-password-5f1c';
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, login: loginCmd(wrong) }), work());
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: registry 127\.0\.0\.1:\d+ refused the login of user "buildbot-test"/m);
    assert.deepEqual(headers(res.stdout), ['login']);
    assert.ok(!existsSync(path.join(work(), 'cache', image)), 'nothing was cloned');
    assert.ok(!(res.stdout + res.stderr).includes(wrong));
  });

  it('a key the git host does not accept is a clear error', async () => {
    const repo = repoWith('badkey', staticSite());
    const image = unique('badkey');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, key: keyBase64('stranger_ed25519') }), work());
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: the git host refused the key for ssh:\/\/.*; give a deploy key/m);
    const stranger = readFileSync(keyPath('stranger_ed25519'), 'utf8').split('\n')[1];
    assert.ok(!(res.stdout + res.stderr).includes(stranger));
  });

  it('no key for a repository whose host asks for one is a clear error that says none was given', async () => {
    const repo = repoWith('nokey', staticSite());
    const image = unique('nokey');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, key: null }), work());
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: the git host asks for a key for ssh:\/\/\S+ and none was given; give a deploy key .* in --repo_auth_key/m);
    assert.deepEqual(await buildContainers(), []);
  });

  it('no login for a registry that asks for one: exit 2, an error that says to give one, nothing pushed', async () => {
    const repo = repoWith('nologin', staticSite());
    const image = unique('nologin');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, login: null, tags: ['1.0.0', 'latest'] }), work());
    assert.equal(res.code, 2, res.stderr);
    assert.match(res.stderr, /^error: pushing 127\.0\.0\.1:\d+\/\S+:1\.0\.0 failed: the registry asks for a login and none was given; give one with --docker_login_cmd/m);
    assert.equal(res.stderr.match(/^error: /gm)?.length, 1, 'one error line');
    assert.deepEqual(await registryTags(image), []);
    assert.deepEqual(await buildContainers(), []);
  });

  it('an RSA PEM deploy key works too', async () => {
    const repo = repoWith('rsakey', staticSite());
    const image = unique('rsakey');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, key: keyBase64('deploy_rsa') }), work());
    assert.equal(res.code, 0, res.stderr);
  });

  it('an unknown revision is a clear error', async () => {
    const repo = repoWith('badrev', staticSite());
    const image = unique('badrev');
    for (const revision of ['no-such-branch', 'deadbeefdeadbeefdeadbeefdeadbeefdeadbeef']) {
      const res = await runCli(buildArgs({ service: image, repo: repo.url, revision, image }), work());
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, new RegExp(`^error: revision "${revision}" does not exist in ssh://`, 'm'));
    }
  });

  it('refuses a git host whose key changed since the first build of the service', async () => {
    const repo = repoWith('hostkey', staticSite());
    const image = unique('hostkey');
    const { gitHost, gitPort } = testEnv();
    const impostor = readFileSync(keyPath('stranger_ed25519.pub'), 'utf8').split(' ').slice(0, 2).join(' ');
    mkdirSync(path.join(work(), '.known_hosts'), { recursive: true });
    const knownHosts = path.join(work(), '.known_hosts', image);
    writeFileSync(knownHosts, `[${gitHost}]:${gitPort} ${impostor}\n`);
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 1);
    assert.match(res.stderr, new RegExp(`^error: the SSH host key of ${gitHost}:${gitPort} is not the one pinned .* delete ${knownHosts.replace(/[.]/g, '\\.')}`, 'm'));
    assert.deepEqual(await registryTags(image), []);
  });

  it('pins the git host key on the first build', async () => {
    const repo = repoWith('pin', staticSite());
    const image = unique('pin');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 0, res.stderr);
    const pinned = readFileSync(path.join(work(), '.known_hosts', image), 'utf8');
    assert.ok(pinned.includes(testEnv().gitHostPublicKey.split(' ')[1]));
  });

  it('a failed Dockerfile step ends the build with the daemon message and leaves no container', async () => {
    const repo = repoWith('failimage', { Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo about to fail && exit 7\n` });
    const image = unique('failimage');
    const before = await allContainerIds();
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 1);
    assert.match(res.stdout, /about to fail/);
    assert.match(res.stdout, /^\[2\/2\] RUN echo about to fail && exit 7$/m, 'the failing step is named');
    assert.match(res.stderr, /^error: docker build failed: .*exit code: 7/m);
    assert.deepEqual(await allContainerIds(), before, 'no intermediate container remains');
  });

  it('names a builder image that is not there', async () => {
    const repo = repoWith('nobuilder', { ...staticSite(), 'build.sh': '#!/bin/sh\n#build_inside_docker_image=buildbot-test/no-such-builder:1\n' });
    const image = unique('nobuilder');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^error: the builder image buildbot-test\/no-such-builder:1 is not on this Docker engine and could not be pulled/m);
  });

  it('says what is missing in the repository: a Dockerfile, the builder image line', async () => {
    const noDockerfile = repoWith('nodockerfile', { 'README': 'x\n' });
    const a = await runCli(buildArgs({ service: unique('nodf'), repo: noDockerfile.url, revision: 'main', image: unique('nodf') }), work());
    assert.equal(a.code, 1);
    assert.match(a.stderr, /^error: there is no Dockerfile at the root of the repository at [0-9a-f]{12}; .*add one/m);

    // Gone after build.sh: the engine finds no Dockerfile in the context, and the error blames build.sh.
    const removed = repoWith('dfremoved', staticSite({ buildExtra: 'rm Dockerfile' }));
    const c = await runCli(buildArgs({ service: unique('dfrm'), repo: removed.url, revision: 'main', image: unique('dfrm') }), work());
    assert.equal(c.code, 1);
    assert.match(c.stderr, /^error: build\.sh removed the Dockerfile: .*keep it there, or have build\.sh write one$/m);

    const noImageLine = repoWith('noimageline', { ...staticSite(), 'build.sh': '#!/bin/sh\necho hi\n' });
    const b = await runCli(buildArgs({ service: unique('noil'), repo: noImageLine.url, revision: 'main', image: unique('noil') }), work());
    assert.equal(b.code, 1);
    assert.match(b.stderr, /^error: build\.sh has no "#build_inside_docker_image=IMAGE" line/m);
  });

  it('usage errors exit 2 with the usage and the exact problem', async () => {
    const missing = await runCli(['--service_id', 'x', '--revision', 'main', '--image', 'r.example/x', '--tag', '1'], work());
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /^Usage: buildbot\.sh /m);
    assert.match(missing.stderr, /^error: missing --repo$/m);
    assert.equal(missing.stdout, '');

    const typo = await runCli(['--service_id', 'x', '--repo', 'git@h:x', '--revision', 'main', '--image', 'r.example/x', '--tga', '1'], work());
    assert.equal(typo.code, 2);
    assert.match(typo.stderr, /^error: unknown flag --tga \(did you mean --tag\?\)$/m);

    const local = await runCli(['--service_id', 'x', '--repo', 'file:///etc', '--revision', 'main', '--image', 'r.example/x', '--tag', '1'], work());
    assert.equal(local.code, 2);
    assert.match(local.stderr, /^error: --repo "file:\/\/…" is refused/m);

    const help = await runCli(['--help'], work());
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--docker_login_cmd/);
  });
});
