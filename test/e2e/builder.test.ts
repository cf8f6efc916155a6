import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildArgs, headers, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { buildContainers, docker } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import type { Files } from '../helpers/repos.js';

/** The builder images of a service on the engine (src/pipeline/steps/builder.ts labels them so). */
async function builderTags(service: string): Promise<string[]> {
  const images = await docker.listImages({ filters: { label: [`io.buildbot.builder-of=${service}`] } });
  return images.flatMap((image) => image.RepoTags ?? []).sort();
}

/** A repository whose build.sh runs in an image built from ci/builder.Dockerfile, which installs `mytool`. */
function withBuilder(tool: string, opts: { header?: string; from?: string; extra?: Files } = {}): Files {
  const env = testEnv();
  return {
    'build.sh': {
      mode: 0o755,
      content: `#!/bin/sh\n${opts.header ?? '#build_inside_dockerfile=ci/builder.Dockerfile'}\nset -e\nmytool > public.txt\ncat public.txt\n`,
    },
    'ci/builder.Dockerfile': `FROM ${opts.from ?? env.busyboxImage}\nCOPY mytool /bin/mytool\nRUN chmod +x /bin/mytool && echo "installed mytool"\n`,
    'ci/mytool': `#!/bin/sh\necho "${tool}"\n`,
    'ci/.dockerignore': 'notes.txt\n',
    Dockerfile: `FROM ${env.busyboxImage}\nCOPY public.txt /public.txt\n`,
    ...opts.extra,
  };
}

const errorLines = (stderr: string) => stderr.split('\n').filter((line) => line.startsWith('error:'));

describe('a builder made from the repository\'s Dockerfile (#build_inside_dockerfile)', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  it('builds the builder from ci/builder.Dockerfile and build.sh sees what it installed; unchanged, it is reused with no build; changed, a new one is built; two are kept', async () => {
    const service = unique('builder');
    const repo = repoWith('builder', withBuilder(`tool of ${service} v1`));
    const build = (tag: string) => runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service, tags: [tag] }), work());

    const first = await build('1.0.0');
    assert.equal(first.code, 0, first.stderr);
    assert.deepEqual(headers(first.stdout), ['login', 'checkout', 'metadata', 'builder', 'build.sh', 'image', 'test', 'push', 'done']);
    assert.match(first.stdout, /^building builder buildbot-builder\/builder-[\w-]+:[0-9a-f]{32} from ci\/builder\.Dockerfile \(context: ci\/\)$/m);
    assert.match(first.stdout, /^installed mytool$/m, 'the builder\'s RUN step output streams');
    assert.match(first.stdout, new RegExp(`^tool of ${service} v1$`, 'm'), 'build.sh ran the tool the builder installed');
    const v1 = await builderTags(service);
    assert.equal(v1.length, 1);
    assert.match(first.stdout, new RegExp(`# build\\.sh: \\./build\\.sh in ${v1[0]}`));

    // A file .dockerignore leaves out of the builder's context changes nothing.
    repo.commit({ 'ci/notes.txt': 'not part of the builder\n', 'README': 'the service changed, its builder did not\n' });
    const again = await build('1.0.1');
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /^builder buildbot-builder\/\S+ is on the engine: ci\/builder\.Dockerfile and its folder are unchanged, nothing to build$/m);
    assert.doesNotMatch(again.stdout, /installed mytool|^building builder/m, 'no builder build ran');
    assert.deepEqual(await builderTags(service), v1, 'no new builder image');

    repo.commit(withBuilder(`tool of ${service} v2`));
    const second = await build('2.0.0');
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /^building builder /m);
    assert.match(second.stdout, new RegExp(`^tool of ${service} v2$`, 'm'));
    const v2 = await builderTags(service);
    assert.equal(v2.length, 2);

    repo.commit(withBuilder(`tool of ${service} v3`));
    const third = await build('3.0.0');
    assert.equal(third.code, 0, third.stderr);
    const v3 = await builderTags(service);
    assert.equal(v3.length, 2, 'the last two builders are kept');
    assert.ok(!v3.includes(v1[0]), 'the oldest builder was removed');
    assert.deepEqual(await buildContainers(), []);
  });

  it('builds a builder FROM a private image of the push registry with the build\'s login', async () => {
    const { registry } = testEnv();
    const base = unique('builder-base');
    const baseRepo = repoWith('builder-base', { Dockerfile: `FROM ${testEnv().busyboxImage}\nRUN echo ${base} > /base-marker\n` });
    const pushed = await runCli(buildArgs({ service: base, repo: baseRepo.url, revision: 'main', image: base }), work());
    assert.equal(pushed.code, 0, pushed.stderr);
    // Only the registry has it now: BuildKit must fetch it, and the registry wants a login for that.
    await docker.getImage(`${registry}/${base}:1.0.0`).remove();

    const service = unique('private-builder');
    const repo = repoWith('private-builder', withBuilder('from a private base', {
      from: `${registry}/${base}:1.0.0`,
      extra: { 'ci/mytool': '#!/bin/sh\necho "marker: $(cat /base-marker)"\n' },
    }));
    const res = await runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work());
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, new RegExp(`^marker: ${base}$`, 'm'), 'build.sh ran in a builder made from the private image');
    assert.deepEqual(await buildContainers(), []);
  });

  it('refuses a symlinked folder, an absolute path, a ".." path and both headers at once, each with one error line', async () => {
    const cases: Array<{ name: string; files: Files; error: RegExp }> = [
      {
        name: 'symlinked folder',
        files: withBuilder('x', { header: '#build_inside_dockerfile=link/builder.Dockerfile', extra: { link: { symlink: 'ci' } } }),
        error: /^error: #build_inside_dockerfile=link\/builder\.Dockerfile in build\.sh: a directory on its path is a symbolic link or not a directory/,
      },
      {
        name: 'symlinked file',
        files: withBuilder('x', { extra: { 'ci/builder.Dockerfile': { symlink: '/etc/passwd' } } }),
        error: /^error: ci\/builder\.Dockerfile in the repository is a symbolic link/,
      },
      {
        name: 'absolute',
        files: withBuilder('x', { header: '#build_inside_dockerfile=/etc/passwd' }),
        error: /^error: #build_inside_dockerfile "\/etc\/passwd" is absolute; give a path relative to the repository root, e\.g\. ci\/builder\.Dockerfile; fix the #build_inside_dockerfile line of build\.sh$/,
      },
      {
        name: 'dot-dot',
        files: withBuilder('x', { header: '#build_inside_dockerfile=ci/../../other/Dockerfile' }),
        error: /^error: #build_inside_dockerfile "ci\/\.\.\/\.\.\/other\/Dockerfile" has a "\.\." part/,
      },
      {
        name: 'both headers',
        files: withBuilder('x', { header: `#build_inside_dockerfile=ci/builder.Dockerfile\n#build_inside_docker_image=${testEnv().busyboxImage}` }),
        error: /^error: build\.sh has both a "#build_inside_docker_image=" and a "#build_inside_dockerfile=" line; keep one/,
      },
    ];
    for (const { name, files, error } of cases) {
      const service = unique('bad-builder');
      const repo = repoWith('bad-builder', files);
      const res = await runCli(buildArgs({ service, repo: repo.url, revision: 'main', image: service }), work());
      assert.equal(res.code, 1, `${name}: ${res.stderr}`);
      const lines = errorLines(res.stderr);
      assert.equal(lines.length, 1, `${name}: one error line:\n${res.stderr}`);
      assert.match(lines[0], error, name);
      assert.ok(!headers(res.stdout).includes('builder'), `${name}: no builder step ran`);
      assert.deepEqual(await builderTags(service), [], `${name}: no builder image`);
    }
    assert.deepEqual(await buildContainers(), []);
  });

});
