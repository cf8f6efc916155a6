import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { buildArgs, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { buildContainers, pulledFiles } from '../helpers/docker.js';
import { testEnv } from '../helpers/env.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import type { Files } from '../helpers/repos.js';

/**
 * Issue 22: the image step sends only the paths the Dockerfile's COPY and ADD lines name (the
 * Dockerfile from the text read); the whole context whenever that is not certain.
 */
describe('the part of /project the image step sends', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();
  const env = testEnv();
  const script = (extra = '') => ({
    mode: 0o755,
    content: `#!/bin/sh\n#build_inside_docker_image=${env.busyboxImage}\nset -e\nmkdir -p out\nls src > out/listing\necho "$BUILDBOT_SERVICE_ID" > out/service\n${extra}\n`,
  });
  const build = async (service: string, repo: string, tag: string) => {
    const res = await runCli(buildArgs({ service, repo, revision: 'main', image: service, tags: [tag] }), work());
    assert.equal(res.code, 0, res.stderr);
    assert.deepEqual(await buildContainers(), [], 'no container left');
    return res;
  };
  const ref = (service: string, tag: string) => `${env.registry}/${service}:${tag}`;

  it('a changed and a deleted file: the image has exactly the new tree; another service sees only its own; what build.sh left last time is gone', async () => {
    const files: Files = {
      'build.sh': script('echo leftover > src/left-by-build'),
      Dockerfile: `FROM ${env.busyboxImage}\nCOPY src/ /app/src/\nCOPY out /app/out\n`,
      'src/a.txt': 'a1\n', 'src/b.txt': 'b1\n', 'src/sub/c.txt': 'c1\n', 'big/blob.txt': 'x'.repeat(100_000),
    };
    const repo = repoWith('part', files);
    const a = unique('part-a');
    const first = await build(a, repo.url, '1');
    assert.match(first.stdout, /^context: Dockerfile, out, src \(the Dockerfile and the paths its COPY and ADD lines name; the rest of the tree is not sent\)$/m);
    const one = await pulledFiles(ref(a, '1'), '/app');
    assert.equal(one.get('app/src/a.txt'), 'a1\n');
    assert.equal(one.get('app/out/listing'), 'a.txt\nb.txt\nsub\n');

    repo.commit({ 'src/a.txt': 'a2\n', 'src/b.txt': null, 'build.sh': script() });
    await build(a, repo.url, '2');
    const two = await pulledFiles(ref(a, '2'), '/app');
    assert.deepEqual([...two.keys()].filter((k) => k.startsWith('app/src/')).sort(), ['app/src/a.txt', 'app/src/sub', 'app/src/sub/c.txt']);
    assert.equal(two.get('app/src/a.txt'), 'a2\n', 'the changed file changed');
    assert.equal(two.get('app/out/listing'), 'a.txt\nsub\n', 'build.sh saw the deleted file gone and nothing the last build left');
    assert.equal(two.get('app/out/service'), `${a}\n`);

    const b = unique('part-b');
    await build(b, repo.url, '1');
    const other = await pulledFiles(ref(b, '1'), '/app');
    assert.equal(other.get('app/out/service'), `${b}\n`, 'the other service built its own tree');
    assert.equal(other.get('app/out/listing'), 'a.txt\nsub\n');
  });

  it('sends the whole context for COPY . and when a named path links out of the part sent', async () => {
    const whole = repoWith('part-whole', {
      'build.sh': script(),
      Dockerfile: `FROM ${env.busyboxImage}\nCOPY . /all/\n`,
      'src/a.txt': 'a\n', 'other/o.txt': 'o\n',
    });
    const s1 = unique('part-whole');
    const res = await build(s1, whole.url, '1');
    assert.doesNotMatch(res.stdout, /^context: /m);
    const all = await pulledFiles(ref(s1, '1'), '/all');
    assert.equal(all.get('all/other/o.txt'), 'o\n');
    assert.equal(all.get('all/out/listing'), 'a.txt\n');

    // out/a links to ../src/a.txt: COPY follows a source that is a link, so src/ must be there too.
    const linked = repoWith('part-link', {
      'build.sh': script('ln -s ../src/a.txt out/a'),
      Dockerfile: `FROM ${env.busyboxImage}\nCOPY out/a /a.txt\n`,
      'src/a.txt': 'through the link\n',
    });
    const s2 = unique('part-link');
    const res2 = await build(s2, linked.url, '1');
    assert.match(res2.stdout, /^context: out\/a links to \.\.\/src\/a\.txt, outside the part of the context sent: sending the whole context$/m);
    const got = await pulledFiles(ref(s2, '1'), '/a.txt');
    assert.equal(got.get('a.txt'), 'through the link\n');
  });
});
