import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { assertNoSecrets, buildArgs, headers, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { EngineSshHost, SecondEngine } from '../helpers/engine.js';
import { testEnv } from '../helpers/env.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import { docker, pulledFiles } from '../helpers/docker.js';
import { registryTags } from '../helpers/registry.js';

const b64 = (text: string) => Buffer.from(text).toString('base64');

/** A repository that is only a Dockerfile: the quickest build that still pushes. */
const plain = (extra = '') => ({ Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo built > /built${extra}\n` });

describe('registries: every login form users pass reaches the test registry', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  const build = async (login: string | null, extra: string[] = [], env: Record<string, string> = {}) => {
    const repo = repoWith('login', plain());
    const image = unique('login');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, login, extra }), work(), env);
    assertNoSecrets(res.stdout, res.stderr);
    return { res, image };
  };

  it("takes ECR's exact get-login output: -e none ignored with a note, https:// before the registry", async () => {
    const { registry, registryUser, registryPassword } = testEnv();
    const { res, image } = await build(`docker login -u ${registryUser} -p ${registryPassword} -e none https://${registry}`);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /note: --docker_login_cmd: -e\/--email is ignored/);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
  });

  it('takes the pflag forms -u=USER, -pPASSWORD and a /v2/ path', async () => {
    const { registry, registryUser, registryPassword } = testEnv();
    const { res, image } = await build(`docker login -u=${registryUser} -p${registryPassword} http://${registry}/v2/`);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
  });

  it('takes a whole config.json as the login cache, the entry found under its https:// key', async () => {
    const { registry, registryUser, registryPassword } = testEnv();
    const config = { auths: { 'https://index.docker.io/v1/': { auth: b64('hub:other') }, [`https://${registry}/v1/`]: { auth: b64(`${registryUser}:${registryPassword}`) } } };
    const { res, image } = await build(null, ['--docker_login_cache', `${b64(JSON.stringify(config, null, '\t'))}\n`]);
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
  });

  it('refuses a login cache that is no credential, naming the flag, before any work', async () => {
    const { res } = await build(null, ['--docker_login_cache', b64(JSON.stringify({ auths: {} })).slice(0, 12)]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /error: --docker_login_cache .*is neither the "auth" value/);
    assert.deepEqual(headers(res.stdout), []);
  });

  it('never echoes the password of a wrong login command', async () => {
    const { registry, registryUser, registryPassword } = testEnv();
    for (const login of [
      `docker login -u ${registryUser} -p ${registry} ${registryPassword}`,
      `docker login -u ${registryUser} -p${registryPassword} --bogus ${registry}`,
      `docker login -u ${registryUser} --password-stdin ${registry}`,
    ]) {
      const { res } = await build(login);
      assert.equal(res.code, 2, login);
      assert.match(res.stderr, /error: --docker_login_cmd/);
      assert.ok(!res.stderr.includes(registryPassword) && !res.stdout.includes(registryPassword), res.stderr);
    }
  });

  it('refuses an image whose capitalized first part docker would take for a host', async () => {
    const repo = repoWith('login', plain());
    const args = buildArgs({ service: unique('caps'), repo: repo.url, revision: 'main', image: 'x', login: 'docker login -u u -p caps-test-pw' });
    args[args.indexOf('--image') + 1] = 'Regsvc/api';
    const res = await runCli(args, work());
    assert.equal(res.code, 2);
    assert.match(res.stderr, /error: --image "Regsvc\/api": its first part "Regsvc" has capital letters/);
  });
});

describe('build options and BuildKit credentials', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  const buildRepo = async (files: Record<string, string>, extra: string[] = [], image = unique('opts')) => {
    const repo = repoWith('opts', files);
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, extra }), work());
    assertNoSecrets(res.stdout, res.stderr);
    return { res, image };
  };

  it('pulls a private FROM image of the push registry on a clean engine cache, and nothing is sent to any other registry', async () => {
    const { registry } = testEnv();
    const base = unique('private-base');
    const pushed = await buildRepo({ Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo ${base} > /base-marker\n` }, [], base);
    assert.equal(pushed.res.code, 0, pushed.res.stderr);
    // Only the registry has it now: BuildKit must fetch its manifest, and the registry wants a login for that.
    await docker.getImage(`${registry}/${base}:1.0.0`).remove();

    const app = await buildRepo({ Dockerfile: `FROM ${registry}/${base}:1.0.0\nRUN cat /base-marker\n` });
    assert.equal(app.res.code, 0, app.res.stderr);
    assert.match(app.res.stdout, new RegExp(`^${base}$`, 'm'), 'the RUN step read the private base image');

    // The same registry under another name is another host: it gets no credentials, and refuses the pull.
    await docker.getImage(`${registry}/${base}:1.0.0`).remove().catch(() => undefined);
    const otherHost = registry.replace('127.0.0.1', 'localhost');
    const stranger = await buildRepo({ Dockerfile: `FROM ${otherHost}/${base}:1.0.0\nRUN true\n` });
    assert.equal(stranger.res.code, 1);
    assert.match(stranger.res.stderr, /error: docker build failed: .*(401|[Uu]nauthorized|authorization)/);
  });

  it('builds with --dockerfile, --build_arg and --target', async () => {
    const files = {
      'docker/Dockerfile.app': [
        `FROM ${testEnv().busyboxImage} AS base`,
        'ARG GREETING=unset',
        'RUN mkdir /out && echo "greeting=$GREETING" > /out/greeting',
        'FROM base AS final',
        'RUN echo final > /out/stage',
        'FROM base AS broken',
        'RUN echo "the last stage was built" && exit 3',
      ].join('\n'),
      Dockerfile: 'this root Dockerfile is not the one built\n',
    };
    const { res, image } = await buildRepo(files, ['--dockerfile', 'docker/Dockerfile.app', '--build_arg', 'GREETING=hello world', '--target', 'final']);
    assert.equal(res.code, 0, res.stderr);
    const out = await pulledFiles(`${testEnv().registry}/${image}:1.0.0`, '/out');
    assert.equal(out.get('out/greeting'), 'greeting=hello world\n');
    assert.equal(out.get('out/stage'), 'final\n');

    const escaping = await buildRepo(files, ['--dockerfile', '../Dockerfile']);
    assert.equal(escaping.res.code, 2);
    assert.match(escaping.res.stderr, /error: --dockerfile "\.\.\/Dockerfile" has a "\.\." part/);
    const missing = await buildRepo(files, ['--dockerfile', 'docker/Nope']);
    assert.equal(missing.res.code, 1);
    assert.match(missing.res.stderr, /error: there is no docker\/Nope in the repository at [0-9a-f]{12}, the Dockerfile --dockerfile names/);
  });

  it('builds without the layer cache with --no_cache', async () => {
    const files = { Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo ${unique('nocache')}-${Date.now()} > /x\n` };
    const repo = repoWith('nocache', files);
    const image = unique('nocache');
    const run = (tag: string, extra: string[] = []) => runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: [tag], extra }), work());
    const first = await run('1');
    assert.equal(first.code, 0, first.stderr);
    const cached = await run('2');
    assert.match(cached.stdout, /\[2\/2\] RUN echo nocache-.* \(cached\)/, 'the second build reuses the layer');
    const fresh = await run('3', ['--no_cache']);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.match(fresh.stdout, /\[2\/2\] RUN echo nocache-/);
    assert.doesNotMatch(fresh.stdout, /RUN echo nocache-.* \(cached\)/, 'the RUN step ran again');
  });

  it('hands a build secret to RUN --mount=type=secret, redacted from the output', async () => {
    const token = `tok-${unique('s')}-${Date.now()}`;
    const step = `${unique('secret-step')}-${Date.now()}`;
    const { res } = await buildRepo({
      // Unique: a secret is no part of BuildKit's cache key, so a step run before would show as cached.
      Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN --mount=type=secret,id=npm_token echo "${step} length $(wc -c < /run/secrets/npm_token)" && cat /run/secrets/npm_token\n`,
    }, ['--build_secret', `npm_token=${token}`]);
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`length ${token.length}`));
    assert.ok(!res.stdout.includes(token) && !res.stderr.includes(token), 'the secret was redacted');
  });
});

describe('remote engines: DOCKER_HOST as the docker CLI reads it', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();
  const engine = new SecondEngine();
  const sshHost = new EngineSshHost(engine.socket);
  before(async () => {
    await engine.start();
    await sshHost.start();
  });
  after(async () => {
    sshHost.stop();
    await engine.stop();
  });

  const buildOn = async (env: Record<string, string>, files = plain()) => {
    const repo = repoWith('remote', files);
    const image = unique('remote');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work(), env);
    assertNoSecrets(res.stdout, res.stderr);
    return { res, image };
  };
  const imagesOnSecondEngine = () => engine.docker(['images', '--format', '{{.Repository}}:{{.Tag}}'])!.split('\n');

  it('builds and pushes through a --tlsverify TCP listener with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH', async () => {
    const { res, image } = await buildOn(engine.tlsEnv());
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
    assert.ok(imagesOnSecondEngine().includes(`${testEnv().registry}/${image}:1.0.0`), 'the image was built on the TLS engine');
  });

  it('reaches a bracketed IPv6 address', async (t) => {
    if (engine.tcp6Port === undefined) return t.skip('no IPv6 loopback on this machine');
    const { res } = await buildOn(engine.tlsEnv(engine.clientCerts, `tcp://[::1]:${engine.tcp6Port}`));
    assert.equal(res.code, 0, res.stderr);
  });

  it('says what is wrong when TLS is missing or the certificate is not trusted', async () => {
    const plainHttp = await buildOn({ DOCKER_HOST: `tcp://127.0.0.1:${engine.tcpPort}` });
    assert.equal(plainHttp.res.code, 1);
    assert.match(plainHttp.res.stderr, /error: cannot reach the Docker engine at tcp:\/\/127\.0\.0\.1:\d+ \(the engine speaks TLS\); set DOCKER_TLS_VERIFY=1/);
    const stranger = await buildOn(engine.tlsEnv(engine.strangerCerts));
    assert.equal(stranger.res.code, 1);
    assert.match(stranger.res.stderr, /error: cannot reach the Docker engine at .*\(TLS, certificate verified\) \(TLS: .*\); check that DOCKER_CERT_PATH holds the ca.pem/);
    assert.deepEqual(headers(stranger.res.stdout), ['login']);
  });

  it('reuses the layers of an image in the registry with --cache_from on an engine that never built it', async () => {
    const files = { Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo ${unique('layer')} > /one\nRUN echo second > /two\n` };
    const repo = repoWith('cache', files);
    const image = unique('cache');
    const first = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(first.code, 0, first.stderr);
    assert.doesNotMatch(first.stdout, /RUN echo second > \/two \(cached\)/);

    const from = `${testEnv().registry}/${image}:1.0.0`;
    const args = buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['2.0.0'], extra: ['--cache_from', from] });
    const second = await runCli(args, work(), engine.tlsEnv());
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /RUN echo layer-.* > \/one \(cached\)/);
    assert.match(second.stdout, /RUN echo second > \/two \(cached\)/);
    assert.deepEqual(await registryTags(image), ['1.0.0', '2.0.0']);
  });

  it('builds through ssh:// with the host key pinned, and refuses a host whose key is not the pinned one', async () => {
    const { res, image } = await buildOn(sshHost.env());
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(await registryTags(image), ['1.0.0']);
    assert.ok(imagesOnSecondEngine().includes(`${testEnv().registry}/${image}:1.0.0`), 'the image was built on the engine behind ssh');

    const impostor = await buildOn(sshHost.env(sshHost.wrongKnownHosts));
    assert.equal(impostor.res.code, 1);
    assert.match(impostor.res.stderr, /error: cannot reach the Docker engine at ssh:\/\/.*Host key verification failed.*not the one pinned/);
  });
});
