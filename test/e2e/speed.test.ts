import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { assertNoSecrets, buildArgs, unique } from '../helpers/build.js';
import { runCli } from '../helpers/cli.js';
import { suiteRepos, suiteWorkDir } from '../helpers/fixtures.js';
import { staticSite } from '../helpers/repos.js';

const TRACE_LINE = /^buildbot: build-trace (\{.*\})$/gm;

describe('speed: where the time goes, and the shortcuts that save it', () => {
  const work = suiteWorkDir();
  const repoWith = suiteRepos();

  it('BUILDBOT_TRACE=1 logs each step with its engine, git and own CPU time; without it, nothing', async () => {
    const repo = repoWith('trace', staticSite());
    const image = unique('trace');
    const args = buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['1'] });
    const traced = await runCli(args, work(), { BUILDBOT_TRACE: '1' });
    assert.equal(traced.code, 0, traced.stderr);
    const rows = [...traced.stderr.matchAll(TRACE_LINE)].map((m) => JSON.parse(m[1]) as Record<string, number | string>);
    assert.deepEqual(rows.map((r) => r.step), ['login', 'checkout', 'metadata', 'build.sh', 'image', 'test', 'push', 'done', 'cleanup', 'total']);
    const by = Object.fromEntries(rows.map((r) => [r.step, r as Record<string, number>]));
    assert.ok(by.checkout.git_ms > 0 && by.checkout.engine_ms === 0, `the clone is git time: ${JSON.stringify(by.checkout)}`);
    for (const step of ['build.sh', 'image', 'test', 'push']) {
      assert.ok(by[step].engine_ms > 0 && by[step].git_ms === 0, `${step} is engine time: ${JSON.stringify(by[step])}`);
      assert.ok(by[step].engine_ms <= by[step].wall_ms);
    }
    assert.ok(by.total.wall_ms >= by.total.engine_ms + by.total.git_ms - 1, 'the steps here never wait on both at once');
    assertNoSecrets(traced.stderr);

    const plain = await runCli(buildArgs({ service: image, repo: repo.url, revision: 'main', image, tags: ['2'] }), work());
    assert.equal(plain.code, 0, plain.stderr);
    assert.doesNotMatch(plain.stderr, /build-trace/);
  });
});
