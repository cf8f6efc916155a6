import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { chmodSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { ignoreReason, readEvent } from '../../src/forges/events.js';
import { verifySignature } from '../../src/forges/verify.js';
import { checkProjects } from '../../src/projects/builds.js';
import { Deliveries, KEEP_MS } from '../../src/projects/deliveries.js';
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

describe('deliveries remembered across restarts', () => {
  it('keeps a delivery at least three days, in the work dir, and forgets it after four', () => {
    const work = mkdtempSync(path.join(os.tmpdir(), 'deliveries-unit-'));
    const first = new Deliveries(work, () => {});
    const key = Deliveries.key('github', 'site', 'abc-123');
    first.remember(key, '0mxdu2wso61d26bdb');
    assert.equal(new Deliveries(work, () => {}).get(key), '0mxdu2wso61d26bdb', 'a new process reads it back');
    const file = path.join(work, '.hooks', 'deliveries.json');
    const stored = JSON.parse(readFileSync(file, 'utf8')) as Record<string, { build: string; at: number }>;
    stored[key].at = Date.now() - 3 * 24 * 3600 * 1000 - 60_000;
    writeFileSync(file, JSON.stringify(stored));
    assert.equal(new Deliveries(work, () => {}).get(key), '0mxdu2wso61d26bdb', 'three days and a minute later');
    stored[key].at = Date.now() - KEEP_MS - 1;
    writeFileSync(file, JSON.stringify(stored));
    assert.equal(new Deliveries(work, () => {}).get(key), undefined);
  });

  it('warns about a secret file other users can read, naming the file but not its content', () => {
    const secret = path.join(dir, 'token');
    writeFileSync(secret, 'tok-Zq81xYw\n', { mode: 0o644 });
    chmodSync(secret, 0o644);
    const loaded = load(`${site}    docker_login_cache: {file: ${secret}}\n`);
    assert.equal(loaded.projects.get('site')!.dockerLoginCache, 'tok-Zq81xYw');
    assert.equal(loaded.warnings.length, 1);
    assert.match(loaded.warnings[0], /readable by every user/);
    assert.ok(!loaded.warnings[0].includes('tok-Zq81xYw'));
    chmodSync(secret, 0o600);
    assert.deepEqual(load(`${site}    docker_login_cache: {file: ${secret}}\n`).warnings, []);
  });
});

describe('a project\'s build options', () => {
  it('go through the request parser: its checks speak in the project\'s keys', async () => {
    const file = path.join(dir, 'options.yaml');
    writeFileSync(file, `${site}    build_arg: {NODE_ENV: production}\n    target: runtime\n    build_secret: {npm: {env: NPM_TOKEN}}\n    dockerfile: docker/Dockerfile\n`);
    const loaded = await checkProjects(file, { NPM_TOKEN: 'npm_tokenQ1w2e3' });
    const project = loaded.projects.get('site')!;
    assert.deepEqual(project.build.buildArgs, { NODE_ENV: 'production' });
    assert.deepEqual(project.build.buildSecrets, { npm: 'npm_tokenQ1w2e3' });
    assert.ok(loaded.secrets.includes('npm_tokenQ1w2e3'));
    writeFileSync(file, `${site}    dockerfile: ../Dockerfile\n`);
    await assert.rejects(checkProjects(file, {}), /projects\.site: dockerfile "\.\.\/Dockerfile" has a "\.\." part/);
  });
});
