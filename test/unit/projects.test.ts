import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ignoreReason, readEvent } from '../../src/forges/events.js';
import { verifySignature } from '../../src/forges/verify.js';
import { loadProjectsFile } from '../../src/projects/file.js';
import { dockerTagOf, globMatches, mapRef, renderTags, UNKNOWN_SHA } from '../../src/projects/tags.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'projects-unit-'));
const load = (text: string, env: Record<string, string> = {}) => {
  const file = path.join(dir, `p${Math.random().toString(36).slice(2)}.yaml`);
  writeFileSync(file, text);
  return loadProjectsFile(file, env);
};
const site = `projects:
  site:
    repo: git@github.com:acme/site.git
    image: registry.example.com/site
    on_branch:
      main: ["latest", "main-{short_sha}"]
      "release/*": ["rc-{branch}"]
      "**": ["branch-{branch}"]
    on_tag:
      pattern: '^v(?<version>[0-9]+\\.[0-9]+\\.[0-9]+)$'
      tags: ["{version}", "{tag}"]
`;

describe('projects file and tag mapping', () => {
  it('maps branches (exact name first, then globs in file order) and tags, with placeholders', () => {
    const project = load(site).projects.get('site')!;
    assert.deepEqual(renderTags(mapRef(project, 'branch', 'main')!.templates, mapRef(project, 'branch', 'main')!.values, 'a'.repeat(40)), ['latest', 'main-aaaaaaa']);
    const release = mapRef(project, 'branch', 'release/2.0')!;
    assert.deepEqual(renderTags(release.templates, release.values), ['rc-release-2.0']);
    assert.deepEqual(renderTags(mapRef(project, 'branch', 'feature/a/b')!.templates, mapRef(project, 'branch', 'feature/a/b')!.values), ['branch-feature-a-b']);
    const tag = mapRef(project, 'tag', 'v1.2.3')!;
    assert.deepEqual(renderTags(tag.templates, tag.values), ['1.2.3', 'v1.2.3']);
    assert.equal(mapRef(project, 'tag', 'nightly'), undefined);
    assert.ok(renderTags(['x-{sha}'], {})[0].endsWith(UNKNOWN_SHA));
  });

  it('matches globs in time linear in the name, however the name is made', () => {
    assert.ok(globMatches('feature/*', 'feature/x'));
    assert.ok(!globMatches('feature/*', 'feature/x/y'));
    assert.ok(globMatches('feature/**', 'feature/x/y'));
    assert.ok(globMatches('*-*-*-*-*-*-*-*-*-*-*-*', `${'a-'.repeat(11)}a`));
    const started = process.hrtime.bigint();
    assert.ok(!globMatches('*a*a*a*a*a*a*a*a*a*a*a*a*b', 'a'.repeat(255)));
    assert.ok(Number(process.hrtime.bigint() - started) / 1e6 < 2000, 'a hostile name costs a bounded number of steps');
    assert.equal(dockerTagOf('.-feature/ü'), 'feature--');
  });

  it('refuses inline secrets, unknown keys and placeholders, naming key and line but not the value', () => {
    const inline = () => load(`${site}    repo_auth_key: "-----BEGIN OPENSSH PRIVATE KEY----- hunter2"\n`);
    assert.throws(inline, (err: Error) => /line 12: projects\.site\.repo_auth_key: a secret is given as \{env: NAME\}/.test(err.message) && !err.message.includes('hunter2'));
    assert.throws(() => load(`${site}    secret_sauce: x\n`), /line 12: projects\.site\.secret_sauce: unknown key/);
    assert.throws(() => load(site.replace('{version}"', '{nope}"')), /unknown placeholder \{nope\}/);
    assert.throws(() => load(site.replace('site:', 'bad name:')), /a project name is 1 to 128/);
    assert.throws(() => load(`${site}    docker_login_cmd: {env: NOT_SET_HERE}\n`), /line 12: .*NOT_SET_HERE is not set/);
    const env = load(`${site}    docker_login_cmd: {env: LOGIN}\n`, { LOGIN: 'docker login -u u -p pw r' });
    assert.equal(env.projects.get('site')!.dockerLoginCmd, 'docker login -u u -p pw r');
    assert.deepEqual(env.secrets, ['docker login -u u -p pw r']);
  });

  it('verifies each forge\'s signature on the raw bytes', () => {
    const raw = Buffer.from('{\n  "ref": "refs/heads/main"\n}');
    const hex = createHmac('sha256', 's3cret').update(raw).digest('hex');
    assert.equal(verifySignature('github', { 'x-hub-signature-256': `sha256=${hex}` }, raw, 's3cret'), 'ok');
    assert.equal(verifySignature('github', { 'x-hub-signature-256': `sha256=${hex}` }, Buffer.from(JSON.stringify(JSON.parse(raw.toString()))), 's3cret'), 'wrong', 'the bytes, not the JSON');
    assert.equal(verifySignature('github', { 'x-hub-signature-256': '' }, raw, 's3cret'), 'missing');
    assert.equal(verifySignature('github', { 'x-hub-signature-256': 'sha256=abc' }, raw, 's3cret'), 'wrong');
    assert.equal(verifySignature('gitea', { 'x-gitea-signature': hex }, raw, 's3cret'), 'ok');
    assert.equal(verifySignature('gitea', { 'x-forgejo-signature': hex }, raw, 's3cret'), 'ok');
    assert.equal(verifySignature('bitbucket', { 'x-hub-signature': `sha256=${hex}` }, raw, 's3cret'), 'ok');
    assert.equal(verifySignature('gitlab', { 'x-gitlab-token': 's3cret' }, raw, 's3cret'), 'ok');
    assert.equal(verifySignature('gitlab', { 'x-gitlab-token': 's3cre' }, raw, 's3cret'), 'wrong');
    assert.equal(verifySignature('gitlab', {}, raw, 's3cret'), 'missing');
  });

  it('reads what a push builds and what it ignores', () => {
    const sha = 'b'.repeat(40);
    const github = readEvent('github', 'push', { ref: 'refs/tags/v1.0.0', after: 'a'.repeat(40), head_commit: { id: sha, message: '[skip ci] release' }, repository: { full_name: 'acme/site' }, pusher: { name: 'ann' } });
    assert.ok(github.kind === 'push');
    assert.deepEqual(github.pushes[0], { kind: 'tag', name: 'v1.0.0', revision: sha, commit: sha, deleted: false, message: '[skip ci] release', pusher: 'ann' });
    assert.equal(ignoreReason(github.pushes[0]), undefined, '[skip ci] never skips a tag');
    assert.match(ignoreReason({ ...github.pushes[0], kind: 'branch' })!, /skip CI/);
    const deleted = readEvent('github', 'push', { ref: 'refs/heads/x', after: '0'.repeat(40), deleted: true, head_commit: null, repository: { full_name: 'acme/site' } });
    assert.ok(deleted.kind === 'push' && /deleted/.test(ignoreReason(deleted.pushes[0])!));
    assert.deepEqual(readEvent('gitea', 'create', {}), { kind: 'ignored', why: 'a create event comes with a push event for the same ref, which builds it' });
    const gitlab = readEvent('gitlab', 'Tag Push Hook', { object_kind: 'tag_push', ref: 'refs/tags/v2', checkout_sha: sha, after: 'c'.repeat(40), commits: [], project: { path_with_namespace: 'g/p' } });
    assert.ok(gitlab.kind === 'push' && gitlab.pushes[0].commit === sha);
  });
});
