import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { testEnv } from '../helpers/env.js';
import { assertNoSecrets, buildArgs, headers, resultMeta, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import { buildContainers, pulledFiles } from '../helpers/docker.js';
import { registryImage, registryTags } from '../helpers/registry.js';
import { HgRepo, removeAll, staticSite } from '../helpers/repos.js';

describe('buildbot.sh builds and pushes', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  it('renders a static site in a builder image, pushes two tags and the registry holds the slim image', async () => {
    const repo = repoWith('site', staticSite({ title: 'welcome' }));
    const commit = repo.head();
    const image = unique('site');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['1.4.2', 'latest'] }), work());

    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(headers(res.stdout), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done']);
    assert.match(res.stdout, /building 1\.4\.2 of site-/, 'build.sh stdout reaches stdout');
    assert.match(res.stderr, /a warning on stderr/, 'build.sh stderr reaches stderr');
    assert.doesNotMatch(res.stdout, /a warning on stderr/);
    assert.match(res.stdout, /test passed/, 'the in-image test ran');
    assert.doesNotMatch(res.stdout, /Sending build context|Running in [0-9a-f]+|Removing intermediate container/);

    const registry = testEnv().registry;
    assert.deepEqual(await registryTags(image), ['1.4.2', 'latest']);
    const pushed = await registryImage(image, '1.4.2');
    assert.equal((await registryImage(image, 'latest')).digest, pushed.digest, 'both tags point at the same image');
    assert.equal(pushed.labels['org.opencontainers.image.revision'], commit);
    assert.equal(pushed.labels['org.opencontainers.image.source'], repo.url);
    assert.equal(pushed.labels['org.opencontainers.image.version'], '1.4.2');
    assert.ok(!Number.isNaN(Date.parse(pushed.labels['org.opencontainers.image.created'])));

    const meta = resultMeta(res.stdout);
    assert.equal(meta.digest, pushed.digest);
    assert.equal(meta.revision, commit);
    assert.deepEqual(meta.tags, ['1.4.2', 'latest']);
    assert.equal(meta.image_from, testEnv().busyboxImage);
    assert.ok(typeof meta.image_size === 'number' && meta.image_size > 0);
    assert.ok(typeof meta.duration_ms === 'number');

    const files = await pulledFiles(`${registry}/${image}:latest`, '/www');
    assert.deepEqual([...files.keys()].sort(), ['www', 'www/VERSION', 'www/index.html']);
    assert.equal(files.get('www/index.html'), '<h1>welcome 1.4.2</h1>\n');
    assert.equal(files.get('www/VERSION'), '1.4.2\n');
    const root = await pulledFiles(`${registry}/${image}:latest`, '/');
    assert.ok(![...root.keys()].some((f) => /build\.sh|index\.html\.in|^project\//.test(f.replace(/^\.?\//, ''))), 'no builder files in the image');

    assert.deepEqual(await buildContainers(), []);
    assertNoSecrets(res.stdout, res.stderr);
  });

  it('reuses the clone for a new revision, and does not fetch a revision it already has', async () => {
    const repo = repoWith('reuse', staticSite({ title: 'first' }));
    const image = unique('reuse');
    const first = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /^cloning /m);

    const second = repo.commit(staticSite({ title: 'second' }));
    const next = await runCli(buildArgs({ service: image, repo: repo.url, revision: second.slice(0, 10), image, tags: ['2.0.0'] }), work());
    assert.equal(next.code, 0, next.stderr);
    assert.doesNotMatch(next.stdout, /^cloning /m, 'the clone cache is reused');
    assert.match(next.stdout, /^fetching /m);
    assert.equal((await registryImage(image, '2.0.0')).labels['org.opencontainers.image.revision'], second);
    const files = await pulledFiles(`${testEnv().registry}/${image}:2.0.0`, '/www/index.html');
    assert.equal(files.get('index.html'), '<h1>second 2.0.0</h1>\n');

    const again = await runCli(buildArgs({ service: image, repo: repo.url, revision: second, image, tags: ['2.0.1'] }), work());
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /in the clone cache already; not fetching/);
    assert.doesNotMatch(again.stdout, /^(cloning|fetching) /m);
  });

  it('re-clones a broken clone cache (an interrupted clone)', async () => {
    const repo = repoWith('broken', staticSite());
    const image = unique('broken');
    const first = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(first.code, 0, first.stderr);
    removeAll(path.join(work(), 'cache', image, '.git', 'objects'), path.join(work(), 'cache', image, '.git', 'HEAD'));
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['1.0.1'] }), work());
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /clone cache of .* is broken .*; cloning again/);
  });

  it('applies .dockerignore to the context exactly as docker does, and never sends .git', async () => {
    const image = unique('ignore');
    const repo = repoWith('ignore', {
      Dockerfile: `FROM ${testEnv().busyboxImage}\nCOPY . /app\n`,
      '.dockerignore': '*.log\nsecrets\ndocs/**\n!docs/public\nDockerfile\n',
      'app.js': 'console.log(1)\n',
      'debug.log': 'x\n',
      'sub/nested.log': 'kept: *.log only matches at the root\n',
      'secrets/token': 'x\n',
      'docs/internal.md': 'x\n',
      'docs/public/index.md': 'kept by the exception\n',
    });
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /# build\.sh: none/);
    const files = [...(await pulledFiles(`${testEnv().registry}/${image}:1.0.0`, '/app')).keys()].sort();
    // As with docker: an ignored Dockerfile is still sent (the build used it) but COPY leaves it out.
    assert.deepEqual(files, [
      'app', 'app/.dockerignore', 'app/VERSION', 'app/app.js',
      'app/docs', 'app/docs/public', 'app/docs/public/index.md', 'app/sub', 'app/sub/nested.log',
    ]);
    assert.match(res.stdout, /leaves out the Dockerfile: building with the classic builder/);
  });

  it('builds with BuildKit, naming each step, and leaves what .dockerignore lists out of COPY', async () => {
    const image = unique('bkignore');
    const repo = repoWith('bkignore', {
      Dockerfile: `FROM ${testEnv().busyboxImage}\nCOPY . /app\nRUN echo "files: $(ls -A /app | tr '\\n' ' ')"\n`,
      '.dockerignore': '.dockerignore\n*.log\n',
      // Content of this run only, so the engine's build cache cannot answer the steps.
      'app.js': `console.log('${image}')\n`,
      'debug.log': 'x\n',
    });
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image }), work());
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^\[2\/3\] COPY \. \/app$/m);
    assert.match(res.stdout, /^files: Dockerfile VERSION app\.js $/m, 'the RUN step output, line by line');
    const files = [...(await pulledFiles(`${testEnv().registry}/${image}:1.0.0`, '/app')).keys()].sort();
    assert.deepEqual(files, ['app', 'app/Dockerfile', 'app/VERSION', 'app/app.js']);
  });

  it('builds a Mercurial repository with hg', async () => {
    const repo = new HgRepo(unique('hgsite'));
    const commit = repo.commit(staticSite({ title: 'from hg' }));
    const image = unique('hgsite');
    const res = await runCli(buildArgs({ service: image, repo: repo.url, revision: commit.slice(0, 12), image, extra: ['--vcs', 'hg'] }), work());
    assert.equal(res.code, 0, res.stderr);
    assert.equal((await registryImage(image, '1.0.0')).labels['org.opencontainers.image.revision'], commit);
    const files = await pulledFiles(`${testEnv().registry}/${image}:1.0.0`, '/www/index.html');
    assert.equal(files.get('index.html'), '<h1>from hg 1.0.0</h1>\n');
    assert.ok(existsSync(path.join(work(), 'cache', image, '.hg')), 'the clone cache is an hg clone');
  });
});
