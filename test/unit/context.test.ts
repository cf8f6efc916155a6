import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { createContextFilter } from '../../src/context/filter.js';
import { classifyVcsFailure, hostOf } from '../../src/vcs/classify.js';

describe('build context filter', () => {
  const filter = createContextFilter('# comment\nnode_modules\n*.log\n!keep.log\ndocs/**\n!docs/public\nDockerfile\n.dockerignore\n');
  for (const [path, included] of [
    ['src/a.js', true], ['node_modules/x/y.js', false], ['app.log', false], ['keep.log', true], ['sub/app.log', true],
    ['docs/a.md', false], ['docs/public/i.html', true], ['.git/config', false], ['.hg/store', false],
    ['Dockerfile', true], ['.dockerignore', true],
  ] as const) {
    it(`${included ? 'sends' : 'leaves out'} ${path}`, () => assert.equal(filter.includes(path), included));
  }
  it('always sends the Dockerfile, and .dockerignore only when it must leave the Dockerfile out', () => {
    assert.equal(filter.dockerfileIgnored, true);
    const keepsDockerfile = createContextFilter('.dockerignore\n*.log\n');
    assert.equal(keepsDockerfile.dockerfileIgnored, false);
    assert.equal(keepsDockerfile.includes('.dockerignore'), false);
    assert.equal(keepsDockerfile.includes('Dockerfile'), true);
    assert.equal(createContextFilter('*\n!src').includes('Dockerfile'), true);
    assert.equal(createContextFilter('*\n!src').dockerfileIgnored, true);
  });
  it('descends into excluded directories only when an exception may match below', () => {
    assert.equal(createContextFilter('node_modules').mayIncludeBelow('node_modules'), false);
    assert.equal(filter.mayIncludeBelow('docs'), true);
    assert.equal(filter.mayIncludeBelow('.git'), false);
  });
});

describe('git and hg failures', () => {
  const ctx = { repo: 'ssh://h/r', host: 'h', knownHostsFile: '/w/.known_hosts/s', what: 'git fetch', keyGiven: true };
  it('recognizes what went wrong', () => {
    assert.equal(classifyVcsFailure('@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\nHost key verification failed.', ctx).code, 'EHOSTKEYCHANGED');
    const refused = 'git@h: Permission denied (publickey).\nfatal: Could not read from remote repository.';
    assert.equal(classifyVcsFailure(refused, ctx).code, 'EREPOAUTH');
    assert.match(classifyVcsFailure(refused, ctx).message, /refused the key for ssh:\/\/h\/r/);
    assert.match(classifyVcsFailure(refused, { ...ctx, keyGiven: false }).message, /asks for a key for ssh:\/\/h\/r and none was given; give a deploy key/);
    assert.equal(classifyVcsFailure('ssh: connect to host h port 22: Connection refused', ctx).code, 'EREPOUNREACHABLE');
    const notFound = classifyVcsFailure("fatal: '/x.git' does not appear to be a git repository\nfatal: Could not read from remote repository.\n\nPlease make sure you have the correct access rights", ctx);
    assert.equal(notFound.code, 'EREPONOTFOUND');
    assert.match(notFound.message, /was not found \('\/x\.git' does not appear to be a git repository\)/);
    const other = classifyVcsFailure('fatal: something odd\n', ctx);
    assert.equal(other.code, 'EVCS');
    assert.match(other.message, /git fetch failed: something odd/);
  });
  it('names the host of every URL form', () => {
    assert.equal(hostOf('ssh://git@h.example:2222/x'), 'h.example:2222');
    assert.equal(hostOf('git@github.com:org/x.git'), 'github.com');
    assert.equal(hostOf('https://tok@h.example/x'), 'h.example');
  });
});
