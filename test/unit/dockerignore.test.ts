import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { DOCKERIGNORE_MAX_PATTERNS, DockerignoreMatcher, goClean } from '../../src/context/dockerignore.js';
import { createContextFilter } from '../../src/context/filter.js';
import { CORPUS_FILE, type CorpusCase } from '../corpus/dockerignore-corpus.js';

const isDockerignoreError = (err: unknown) => (err as { code?: string }).code === 'EDOCKERIGNORE';

/** What our filter sends of the files, visited in the order of docker's walk (lexical, depth first). */
function ourIncluded(dockerignore: string, files: string[]): string[] {
  const filter = createContextFilter(dockerignore);
  const walkOrder = [...files].sort((a, b) => {
    const pa = a.split('/');
    const pb = b.split('/');
    for (let i = 0; i < Math.min(pa.length, pb.length); i++) if (pa[i] !== pb[i]) return pa[i] < pb[i] ? -1 : 1;
    return pa.length - pb.length;
  });
  return walkOrder.filter((f) => filter.includes(f)).sort();
}

describe('.dockerignore against what the real docker CLI sent (test/fixtures/dockerignore-corpus.json)', () => {
  const corpus = JSON.parse(readFileSync(CORPUS_FILE, 'utf8')) as CorpusCase[];
  it('holds the recorded cases', () => assert.ok(corpus.length >= 40, `${corpus.length} cases`));
  for (const c of corpus) {
    it(c.name, () => {
      const docker = c.docker!;
      if ('error' in docker || c.refuse) {
        assert.throws(() => createContextFilter(c.dockerignore), isDockerignoreError);
      } else {
        assert.deepEqual(ourIncluded(c.dockerignore, c.files), docker.included);
      }
    });
  }
});

describe('.dockerignore matcher', () => {
  it('names the line of a pattern it refuses', () => {
    assert.throws(() => createContextFilter('ok\n\n# c\nfoo[\n'), /^BuildError: \.dockerignore line 4 cannot be used: a character class/);
    assert.throws(() => DockerignoreMatcher.parse('x\\w\n'), /line 1 cannot be used: "\\w" means a letter to filepath\.Match/);
  });
  it('refuses more than the pattern cap', () => {
    assert.throws(() => DockerignoreMatcher.parse('a\n'.repeat(DOCKERIGNORE_MAX_PATTERNS + 1)), /more than 10000 patterns/);
    assert.equal(DockerignoreMatcher.parse('a\n'.repeat(DOCKERIGNORE_MAX_PATTERNS)).patterns.length, DOCKERIGNORE_MAX_PATTERNS);
  });
  it('matches a path against the pathological patterns in work linear in its length', () => {
    const m = DockerignoreMatcher.parse('(a+)+b\n**/**/**/**/**/**/**/*a*a*a*a*a*a*a*a*b\n');
    for (const n of [1000, 2000]) {
      const before = m.budget.steps;
      assert.equal(m.excludes('a'.repeat(n)), false);
      const steps = m.budget.steps - before;
      assert.ok(steps < 40 * n, `${steps} steps for ${n} characters`);
    }
  });
  it('stops a path that costs more than the budget with EDOCKERIGNORE', () => {
    // Each pattern passes the literal pre-check and fails only at the "/", after the NFA ran over 1,000 characters.
    const m = DockerignoreMatcher.parse('*a*a*a*a*a*a*a*a*b\n'.repeat(2000));
    assert.throws(() => m.excludes(`${'a'.repeat(1000)}/${'a'.repeat(1000)}b`), /\.dockerignore is too costly to match: the patterns up to line 1\d\d /);
  });
  it('stops a context whose paths together cost more than its budget', () => {
    const m = DockerignoreMatcher.parse('**/*x*y*z*\n', 10_000);
    assert.throws(() => {
      for (let i = 0; i < 10_000; i++) m.excludes(`dir/x-${i}-y-${'a'.repeat(40)}`);
    }, /^BuildError: \.dockerignore is too costly to match against this build context: 10,000 matching steps were spent by "dir\/x-\d+-y/);
  });
  it('cleans paths as Go does', () => {
    for (const [p, c] of [['a//b/./c/..', 'a/b'], ['/../x', '/x'], ['../../x', '../../x'], ['', '.'], ['./', '.'], ['a/../..', '..']]) assert.equal(goClean(p), c, p);
  });
  it('leaves .git and .hg out at any depth', () => {
    const f = createContextFilter(undefined);
    for (const p of ['.git', '.git/config', 'vendor/lib/.git/HEAD', 'sub/.hg/store']) assert.equal(f.includes(p), false, p);
    for (const p of ['.gitignore', 'git/x', 'a.hg']) assert.equal(f.includes(p), true, p);
    assert.equal(createContextFilter('*\n!vendor/.git').mayIncludeBelow('vendor/.git'), false);
  });
});
