import assert from 'node:assert/strict';
import { createHmac, randomUUID } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { secretForms, unique } from '../helpers/build.js';
import { loginCmd, testEnv } from '../helpers/env.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { registryTags } from '../helpers/registry.js';
import { removeAll, staticSite, type GitRepo } from '../helpers/repos.js';
import { startServer, type ServerProcess } from '../helpers/server.js';
import { projectsYaml, siteProject, storedFiles } from '../helpers/projects.js';

const FULL = 'hooks-full-token-2b8d4f6a1c';
const SECRETS = { github: 'gh-secret-Qm4Tz8Wp1Lx', gitlab: 'gl-secret-Vn6Ks2Rb9Hy', gitea: 'gt-secret-Jd3Fw7Xc5Ne', bitbucket: 'bb-secret-Pa9Lq4Mv2Zt' };
const TOKENS = { github: 'ghp_statusToken1Aa9', gitlab: 'glpat-statusToken2Bb8', gitea: 'gitea-statusToken3Cc7', bitbucket: 'bbat-statusToken4Dd6' };
const ZERO = '0'.repeat(40);

interface Received { method: string; url: string; headers: http.IncomingHttpHeaders; body: any; at: number }

/**
 * A stand-in for the four forges' commit status APIs: records every call and answers what
 * `plan` says for it (by default 201), so retries, Retry-After and refusals can be played.
 */
class StandInForge {
  readonly received: Received[] = [];
  plan: (req: Received) => { status: number; headers?: Record<string, string> } = () => ({ status: 201 });
  private server!: http.Server;

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      let text = '';
      req.on('data', (d: Buffer) => (text += d.toString()));
      req.on('end', () => {
        const got: Received = { method: req.method!, url: req.url!, headers: req.headers, body: JSON.parse(text || 'null'), at: Date.now() };
        this.received.push(got);
        const answer = this.plan(got);
        res.writeHead(answer.status, { 'Content-Type': 'application/json', ...answer.headers });
        res.end(JSON.stringify(answer.status < 300 ? { id: this.received.length } : { message: answer.status === 422 ? 'Validation Failed' : 'try later' }));
      });
    });
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
  }

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  /** The calls for one commit, in order. */
  for(sha: string): Received[] {
    return this.received.filter((r) => r.url.includes(sha));
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

const hmac = (secret: string, raw: string) => createHmac('sha256', secret).update(raw).digest('hex');

const commitJson = (sha: string, message: string) => ({
  id: sha, tree_id: 'f'.repeat(40), distinct: true, message, timestamp: '2026-12-07T22:00:00Z', url: `https://github.com/acme/site/commit/${sha}`,
  author: { name: 'Ann', email: 'ann@example.com', username: 'ann' }, committer: { name: 'Ann', email: 'ann@example.com', username: 'ann' }, added: [], removed: [], modified: ['README.md'],
});

/** GitHub's push event (docs.github.com, "push"): compact JSON. */
function githubPush(ref: string, after: string, head: { sha: string; message: string } | null, extra: Record<string, unknown> = {}) {
  return {
    ref, before: 'e'.repeat(40), after, created: false, deleted: false, forced: false, base_ref: null, compare: 'https://github.com/acme/site/compare/x...y',
    commits: head ? [commitJson(head.sha, head.message)] : [], head_commit: head ? commitJson(head.sha, head.message) : null,
    repository: { id: 1, node_id: 'R_1', name: 'site', full_name: 'acme/site', private: true, owner: { name: 'acme', login: 'acme' }, html_url: 'https://github.com/acme/site', default_branch: 'main' },
    pusher: { name: 'ann', email: 'ann@example.com' }, sender: { login: 'ann', id: 7 }, ...extra,
  };
}

/** GitLab's Push Hook / Tag Push Hook (docs.gitlab.com, webhook events). */
function gitlabPush(kind: 'push' | 'tag_push', ref: string, sha: string | null, message = 'change') {
  return {
    object_kind: kind, event_name: kind, before: 'e'.repeat(40), after: sha ?? ZERO, ref, ref_protected: true, checkout_sha: sha, message: null,
    user_id: 4, user_name: 'Ann', user_username: 'ann', user_email: '', user_avatar: '', project_id: 15,
    project: { id: 15, name: 'site', web_url: 'https://gitlab.example.com/acme/site', git_ssh_url: 'git@gitlab.example.com:acme/site.git', namespace: 'acme', visibility_level: 0, path_with_namespace: 'acme/site', default_branch: 'main' },
    commits: sha ? [{ id: sha, message, title: message, timestamp: '2026-12-07T22:00:00+00:00', url: 'https://gitlab.example.com/acme/site/-/commit/x', author: { name: 'Ann', email: 'ann@example.com' }, added: [], modified: [], removed: [] }] : [],
    total_commits_count: sha ? 1 : 0, push_options: {}, repository: { name: 'site', url: 'git@gitlab.example.com:acme/site.git', homepage: 'https://gitlab.example.com/acme/site' },
  };
}

/** Gitea/Forgejo's push event: sent pretty-printed. */
function giteaPush(ref: string, after: string, message: string) {
  return {
    ref, before: ZERO, after, compare_url: '', commits: [], total_commits: 0,
    head_commit: { id: after, message, url: '', author: { name: 'Ann', email: 'ann@example.com', username: 'ann' }, timestamp: '2026-12-07T22:00:00Z' },
    repository: { id: 3, owner: { id: 1, login: 'acme', username: 'acme' }, name: 'site', full_name: 'acme/site', private: true, default_branch: 'main' },
    pusher: { id: 1, login: 'ann', username: 'ann' }, sender: { id: 1, login: 'ann', username: 'ann' },
  };
}

/** Bitbucket Cloud's repo:push. */
function bitbucketPush(kind: 'branch' | 'tag', name: string, sha: string | null, message = 'change\n') {
  const ref = (hash: string) => ({ type: kind, name, target: { type: 'commit', hash, message, date: '2026-12-07T22:00:00+00:00', author: { raw: 'Ann <ann@example.com>' }, links: {} }, links: {} });
  return {
    push: { changes: [{ new: sha ? ref(sha) : null, old: ref('e'.repeat(40)), created: false, forced: false, closed: sha === null, truncated: false, commits: [] }] },
    repository: { type: 'repository', full_name: 'acme/site', name: 'site', uuid: '{1}', links: {} },
    actor: { type: 'user', display_name: 'Ann Example', nickname: 'ann', uuid: '{2}' },
  };
}

describe('forge webhooks and commit statuses', () => {
  const repoWith = suiteRepos();
  const forge = new StandInForge();
  let server: ServerProcess;
  let repo: GitRepo;
  let broken: GitRepo;
  let slow: GitRepo;
  let image: string;
  let file: string;
  const answers: string[] = [];
  const base = () => `http://127.0.0.1:${server.httpPort}`;
  const env = () => ({
    TEST_LOGIN: loginCmd(), GH_SECRET: SECRETS.github, GL_SECRET: SECRETS.gitlab, GT_SECRET: SECRETS.gitea, BB_SECRET: SECRETS.bitbucket,
    GH_TOKEN: TOKENS.github, GL_TOKEN: TOKENS.gitlab, GT_TOKEN: TOKENS.gitea, BB_TOKEN: TOKENS.bitbucket,
  });

  /** Sends a hook as the forge would: its headers, the body signed with the real algorithm. */
  const send = async (f: keyof typeof SECRETS, project: string, event: string, payload: unknown, opts: { delivery?: string; signature?: string | null; raw?: string; type?: string } = {}) => {
    const raw = opts.raw ?? (f === 'gitea' ? JSON.stringify(payload, null, 2) : JSON.stringify(payload));
    const headers: Record<string, string> = { 'Content-Type': opts.type ?? 'application/json', 'User-Agent': `${f}-Hookshot/1` };
    const delivery = opts.delivery ?? randomUUID();
    const sig = opts.signature === undefined ? (f === 'gitlab' ? SECRETS.gitlab : hmac(SECRETS[f], raw)) : opts.signature;
    if (f === 'github') Object.assign(headers, { 'X-GitHub-Event': event, 'X-GitHub-Delivery': delivery, 'X-GitHub-Hook-ID': '1' }, sig === null ? {} : { 'X-Hub-Signature-256': opts.signature === undefined ? `sha256=${sig}` : sig });
    if (f === 'gitlab') Object.assign(headers, { 'X-Gitlab-Event': event, 'Idempotency-Key': delivery, 'X-Gitlab-Event-UUID': delivery }, sig === null ? {} : { 'X-Gitlab-Token': sig });
    if (f === 'gitea') Object.assign(headers, { 'X-Gitea-Event': event, 'X-Gitea-Delivery': delivery, 'X-Gogs-Event': event }, sig === null ? {} : { 'X-Gitea-Signature': sig });
    if (f === 'bitbucket') Object.assign(headers, { 'X-Event-Key': event, 'X-Request-UUID': delivery, 'X-Hook-UUID': '{h}' }, sig === null ? {} : { 'X-Hub-Signature': opts.signature === undefined ? `sha256=${sig}` : sig });
    const res = await fetch(`${base()}/hooks/${f}/${project}`, { method: 'POST', headers, body: raw });
    const text = await res.text();
    answers.push(text);
    return { status: res.status, text, json: () => JSON.parse(text) as Record<string, any>, delivery };
  };
  const build = async (id: string) => {
    const res = await fetch(`${base()}/api/v1/builds/${id}`, { headers: { Authorization: `Bearer ${FULL}` } });
    const text = await res.text();
    answers.push(text);
    return JSON.parse(text) as Record<string, any>;
  };
  const finished = async (id: string) => {
    await eventually(async () => ['succeeded', 'failed', 'cancelled'].includes((await build(id)).status), `build ${id} to end`, 180_000);
    return build(id);
  };
  const buildsOfSite = async () => {
    const res = await fetch(`${base()}/api/v1/builds?service_id=site&limit=1000`, { headers: { Authorization: `Bearer ${FULL}` } });
    return ((await res.json()) as { builds: Array<Record<string, any>> }).builds;
  };
  /** Waits until the statuses of a commit have ended with the given one (the final status waits for the pending one). */
  const statusesFor = async (sha: string, last: string, count = 2) => {
    await eventually(() => forge.for(sha).filter((r) => r.body?.state === last).length >= 1 && forge.for(sha).length >= count, `statuses of ${sha} to end with ${last}`, 60_000);
    return forge.for(sha);
  };

  /** Sends 11 MB (declared, or chunked without a length) and returns the status the server answers meanwhile. */
  const oversized = (declared: boolean) => new Promise<number>((resolve, reject) => {
    const req = http.request(`${base()}/hooks/github/site`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', 'X-GitHub-Event': 'push', 'X-Hub-Signature-256': `sha256=${'0'.repeat(64)}`, ...(declared ? { 'Content-Length': String(11 * 1024 * 1024) } : {}) },
    });
    let answered = false;
    req.on('response', (res) => {
      answered = true;
      res.resume();
      resolve(res.statusCode!);
      req.destroy();
    });
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const chunk = Buffer.alloc(1024 * 1024, 0x20);
    let sent = 0;
    const more = () => {
      while (!answered && sent < 11) {
        sent++;
        if (!req.write(chunk)) return void req.once('drain', more);
      }
      if (!answered) req.end();
    };
    more();
  });

  before(async () => {
    await forge.start();
    repo = repoWith('hook-site', staticSite());
    broken = repoWith('hook-broken', staticSite({ buildExtra: 'echo "this commit is broken"; exit 3' }));
    slow = repoWith('hook-slow', staticSite({ buildExtra: 'echo "taking my time"; sleep 120' }));
    image = unique('hook-site');
    file = path.join(testEnv().dir, `${unique('hook-projects')}.yaml`);
    const status = (token: string, extra = '') => `status: {api_url: "${forge.url}/api", token: {env: ${token}}${extra}}`;
    writeFileSync(file, projectsYaml({
      site: siteProject(repo, image, `
public_badge: true
webhooks:
  github: {repository: acme/site, secret: {env: GH_SECRET}, ${status('GH_TOKEN')}}
  gitlab: {project: acme/site, secret: {env: GL_SECRET}, ${status('GL_TOKEN', ', context: ci/site')}}
  gitea: {repository: acme/site, secret: {env: GT_SECRET}, ${status('GT_TOKEN')}}
  bitbucket: {repository: acme/site, secret: {env: BB_SECRET}, ${status('BB_TOKEN')}}`),
      broken: siteProject(broken, unique('hook-broken'), `
webhooks:
  github: {repository: acme/broken, secret: {env: GH_SECRET}}`),
      slow: siteProject(slow, unique('hook-slow'), `
webhooks:
  github: {repository: acme/slow, secret: {env: GH_SECRET}, ${status('GH_TOKEN')}}`),
    }));
    server = await startServer({ args: ['--api-token', FULL, '--projects', file, '--public-url', 'https://ci.example.com/'], env: env() });
  });
  after(async () => {
    await server?.stop();
    await forge.stop();
    if (server) removeAll(server.workDir);
  });

  it('refuses what is not the forge: no, empty or wrong signatures 401; unknown project or forge 404; over 10 MB 413; another repository 403', async () => {
    const push = githubPush('refs/heads/main', repo.head(), { sha: repo.head(), message: 'x' });
    assert.equal((await send('github', 'site', 'push', push, { signature: null })).status, 401);
    const empty = await send('github', 'site', 'push', push, { signature: '' });
    assert.equal(empty.status, 401);
    assert.equal(empty.json().error.code, 'ESIGNATURE');
    assert.equal((await send('github', 'site', 'push', push, { signature: `sha256=${hmac('not-the-secret', JSON.stringify(push))}` })).status, 401);
    // Signed over other bytes (the same JSON re-serialized pretty): the raw bytes count.
    assert.equal((await send('github', 'site', 'push', push, { raw: JSON.stringify(push, null, 2), signature: `sha256=${hmac(SECRETS.github, JSON.stringify(push))}` })).status, 401);
    assert.equal((await send('gitlab', 'site', 'Push Hook', gitlabPush('push', 'refs/heads/main', repo.head()), { signature: 'gl-secret-wrong' })).status, 401);
    assert.equal((await send('gitea', 'site', 'push', giteaPush('refs/heads/main', repo.head(), 'x'), { signature: '' })).status, 401);
    assert.equal((await send('bitbucket', 'site', 'repo:push', bitbucketPush('branch', 'main', repo.head()), { signature: 'sha256=00' })).status, 401);
    assert.equal((await send('github', 'nope', 'push', push)).status, 404);
    assert.equal((await send('gitlab', 'broken', 'Push Hook', gitlabPush('push', 'refs/heads/main', repo.head()))).status, 404, 'a forge the project does not list');
    assert.equal(await oversized(true), 413, 'a declared length over 10 MB is 413');
    assert.equal(await oversized(false), 413, 'a chunked body that grows past 10 MB is 413');
    const other = githubPush('refs/heads/main', repo.head(), { sha: repo.head(), message: 'x' }, { repository: { full_name: 'mallory/site' } });
    const wrongRepo = await send('github', 'site', 'push', other);
    assert.equal(wrongRepo.status, 403);
    assert.equal(wrongRepo.json().error.code, 'EWRONGREPO');
    const form = await send('github', 'site', 'push', push, { type: 'application/x-www-form-urlencoded' });
    assert.equal(form.status, 415);
    assert.equal((await buildsOfSite()).length, 0, 'nothing was built');
  });

  it('answers 200 to events that start nothing: ping, deletions, unmapped refs, [skip ci] on a branch, other events, Gitea create', async () => {
    const ping = await send('github', 'site', 'ping', { zen: 'Keep it logically awesome.', hook_id: 1, hook: { type: 'Repository', events: ['push'] }, repository: { full_name: 'acme/site' } });
    assert.equal(ping.status, 200);
    const head = repo.head();
    const cases: Array<[string, Promise<{ status: number; json: () => Record<string, any> }>, RegExp]> = [
      ['deleted branch', send('github', 'site', 'push', githubPush('refs/heads/feature/x', ZERO, null, { deleted: true })), /branch feature\/x was deleted/],
      ['deleted tag (GitLab)', send('gitlab', 'site', 'Tag Push Hook', gitlabPush('tag_push', 'refs/tags/v9.9.9', null)), /tag v9\.9\.9 was deleted/],
      ['deleted branch (Bitbucket)', send('bitbucket', 'site', 'repo:push', bitbucketPush('branch', 'main', null)), /branch main was deleted/],
      ['unmapped branch', send('github', 'site', 'push', githubPush('refs/heads/docs', head, { sha: head, message: 'docs' })), /maps no tags for branch docs/],
      ['unmapped tag', send('gitea', 'site', 'push', giteaPush('refs/tags/nightly', head, 'x')), /maps no tags for tag nightly/],
      ['[skip ci]', send('github', 'site', 'push', githubPush('refs/heads/main', head, { sha: head, message: 'typo [skip ci]' })), /skip CI/],
      ['[ci skip] (GitLab)', send('gitlab', 'site', 'Push Hook', gitlabPush('push', 'refs/heads/main', head, 'wip [ci skip]')), /skip CI/],
      ['an issue event', send('github', 'site', 'issues', { action: 'opened', repository: { full_name: 'acme/site' } }), /"issues" event builds nothing/],
      ['Gitea create', send('gitea', 'site', 'create', { sha: head, ref: 'v1.0.0', ref_type: 'tag', repository: { full_name: 'acme/site' } }), /create event comes with a push event/],
    ];
    for (const [what, answer, why] of cases) {
      const res = await answer;
      assert.equal(res.status, 200, what);
      assert.match(res.json().ignored, why, what);
    }
    assert.equal((await buildsOfSite()).length, 0, 'nothing was built');
  });

  it('GitHub push to main: 202 at once (queued, not awaited), builds the commit, statuses pending then success; a redelivery answers with that build', async () => {
    const sha = repo.commit({ 'notes.txt': 'one\n' }, 'first change');
    const push = githubPush('refs/heads/main', sha, { sha, message: 'first change' });
    const res = await send('github', 'site', 'push', push);
    assert.equal(res.status, 202, res.text);
    const { build: queued, url } = res.json();
    assert.equal(url, `https://ci.example.com/builds/${queued.id}`);
    assert.ok(['queued', 'running'].includes(queued.status), 'the answer did not wait for the build');
    assert.equal(queued.source, 'webhook');
    assert.deepEqual(queued.trigger, { project: 'site', ref: 'main', forge: 'github', delivery: res.delivery, pusher: 'ann' });
    assert.equal(queued.revision, sha);

    const again = await send('github', 'site', 'push', push, { delivery: res.delivery });
    assert.equal(again.status, 200);
    assert.equal(again.json().build.id, queued.id, 'the redelivery starts nothing');

    const done = await finished(queued.id);
    assert.equal(done.status, 'succeeded');
    assert.deepEqual(done.tags, ['latest', `main-${sha.slice(0, 7)}`]);
    assert.ok((await registryTags(image)).includes(`main-${sha.slice(0, 7)}`));
    const calls = await statusesFor(sha, 'success');
    assert.deepEqual(calls.map((c) => c.body.state), ['pending', 'success']);
    for (const call of calls) {
      assert.equal(call.url, `/api/repos/acme/site/statuses/${sha}`);
      assert.equal(call.headers.authorization, `Bearer ${TOKENS.github}`);
      assert.equal(call.body.target_url, `https://ci.example.com/builds/${queued.id}`);
      assert.equal(call.body.context, 'buildbot/site');
      assert.ok(call.body.description.length <= 140);
    }
    assert.match(calls[1].body.description, /^pushed .*latest/);
    const afterEnd = await send('github', 'site', 'push', push, { delivery: res.delivery });
    assert.equal(afterEnd.json().build.id, queued.id, 'a succeeded build is not built again');
    assert.equal((await buildsOfSite()).length, 1);
    await eventually(async () => (await build(queued.id)).commit_statuses?.length === 2, 'the statuses to show on the build');
    assert.deepEqual((await build(queued.id)).commit_statuses.map((s: { sent: string; ok: boolean }) => [s.sent, s.ok]), [['pending', true], ['success', true]]);
  });

  it('GitHub annotated tag: builds head_commit.id (not the tag object `after`), tags from on_tag, even with [skip ci] in the message', async () => {
    const sha = repo.commit({ 'notes.txt': 'two\n' }, 'release 1.2.0 [skip ci]');
    const tag = repo.tag('v1.2.0', 'release 1.2.0');
    assert.notEqual(tag.object, tag.commit);
    const res = await send('github', 'site', 'push', githubPush('refs/tags/v1.2.0', tag.object, { sha, message: 'release 1.2.0 [skip ci]' }));
    assert.equal(res.status, 202, res.text);
    const done = await finished(res.json().build.id);
    assert.equal(done.status, 'succeeded');
    assert.equal(done.commit, sha);
    assert.deepEqual(done.tags, ['1.2.0']);
    const calls = await statusesFor(sha, 'success');
    assert.deepEqual(calls.map((c) => c.body.state), ['pending', 'success']);
    assert.equal(forge.for(tag.object).length, 0, 'no status for the tag object');
  });

  it('GitLab push: PRIVATE-TOKEN statuses pending, running, success, retried after 503 and a 429 with Retry-After', async () => {
    const sha = repo.commit({ 'notes.txt': 'three\n' }, 'gitlab change');
    let refusals = 0;
    forge.plan = (req) => {
      if (req.url.includes(sha) && req.body.state === 'pending' && refusals < 2) {
        refusals++;
        return refusals === 1 ? { status: 503 } : { status: 429, headers: { 'Retry-After': '2' } };
      }
      return { status: 201 };
    };
    const res = await send('gitlab', 'site', 'Push Hook', gitlabPush('push', 'refs/heads/main', sha, 'gitlab change'));
    assert.equal(res.status, 202, res.text);
    const done = await finished(res.json().build.id);
    assert.equal(done.status, 'succeeded');
    const calls = await statusesFor(sha, 'success', 5);
    assert.deepEqual(calls.map((c) => c.body.state), ['pending', 'pending', 'pending', 'running', 'success']);
    assert.ok(calls[2].at - calls[1].at >= 1900, 'Retry-After: 2 was honoured');
    assert.ok(calls[1].at - calls[0].at >= 900, 'the first retry waited about 1 s');
    for (const call of calls) {
      assert.equal(call.url, `/api/projects/acme%2Fsite/statuses/${sha}`);
      assert.equal(call.headers['private-token'], TOKENS.gitlab);
      assert.equal(call.body.name, 'ci/site');
    }
    const shown = await build(done.id);
    assert.deepEqual(shown.commit_statuses.map((s: { sent: string; attempts: number }) => [s.sent, s.attempts]), [['pending', 3], ['running', 1], ['success', 1]]);
    forge.plan = () => ({ status: 201 });
  });

  it('Gitea: a pretty-printed tag push whose `after` is the tag object builds its commit; statuses go to that commit; push and create make one build', async () => {
    const sha = repo.commit({ 'notes.txt': 'four\n' }, 'gitea release');
    const tag = repo.tag('v2.0.0', 'release 2.0.0');
    const before = (await buildsOfSite()).length;
    const create = await send('gitea', 'site', 'create', { sha, ref: 'v2.0.0', ref_type: 'tag', repository: { full_name: 'acme/site' }, sender: { login: 'ann' } });
    assert.equal(create.status, 200);
    const res = await send('gitea', 'site', 'push', giteaPush('refs/tags/v2.0.0', tag.object, 'release 2.0.0'));
    assert.equal(res.status, 202, res.text);
    const done = await finished(res.json().build.id);
    assert.equal(done.status, 'succeeded');
    assert.equal(done.commit, sha);
    assert.deepEqual(done.tags, ['2.0.0']);
    assert.equal((await buildsOfSite()).length, before + 1, 'one build for push and create');
    const calls = await statusesFor(sha, 'success');
    assert.deepEqual(calls.map((c) => c.body.state), ['pending', 'success']);
    assert.equal(calls[0].headers.authorization, `token ${TOKENS.gitea}`);
    assert.equal(calls[0].url, `/api/repos/acme/site/statuses/${sha}`);
  });

  it('Bitbucket: a branch by glob; a 422 from the status API is not retried and does not fail the build, and the page shows it', async () => {
    const sha = repo.commit({ 'notes.txt': 'five\n' }, 'bitbucket change', 'feature/login');
    forge.plan = (req) => (req.url.includes(sha) ? { status: 422 } : { status: 201 });
    const res = await send('bitbucket', 'site', 'repo:push', bitbucketPush('branch', 'feature/login', sha));
    assert.equal(res.status, 202, res.text);
    const done = await finished(res.json().build.id);
    assert.equal(done.status, 'succeeded');
    assert.deepEqual(done.tags, ['feature-login']);
    await eventually(() => forge.for(sha).length >= 2, 'both statuses to be tried');
    await new Promise((r) => setTimeout(r, 1500));
    const calls = forge.for(sha);
    assert.deepEqual(calls.map((c) => c.body.state), ['INPROGRESS', 'SUCCESSFUL'], 'each tried once');
    assert.equal(calls[0].url, `/api/repositories/acme/site/commit/${sha}/statuses/build`);
    assert.equal(calls[0].body.key, 'buildbot/site');
    assert.equal(calls[0].headers.authorization, `Bearer ${TOKENS.bitbucket}`);
    const shown = await build(done.id);
    assert.deepEqual(shown.commit_statuses.map((s: { ok: boolean; http: number }) => [s.ok, s.http]), [[false, 422], [false, 422]]);
    const page = await fetch(`${base()}/builds/${done.id}`, { headers: { Authorization: `Bearer ${FULL}` } });
    const html = await page.text();
    answers.push(html);
    assert.match(html, /bitbucket <code>SUCCESSFUL<\/code> not posted \(1 attempt, HTTP 422\)/);
    forge.plan = () => ({ status: 201 });
  });

  it('a redelivery of a delivery whose build failed builds again; deliveries are remembered across a restart', async () => {
    const sha = broken.head();
    const push = githubPush('refs/heads/main', sha, { sha, message: 'broken' }, { repository: { full_name: 'acme/broken' } });
    const first = await send('github', 'broken', 'push', push);
    assert.equal(first.status, 202, first.text);
    assert.equal((await finished(first.json().build.id)).status, 'failed');
    const retry = await send('github', 'broken', 'push', push, { delivery: first.delivery });
    assert.equal(retry.status, 202);
    assert.notEqual(retry.json().build.id, first.json().build.id);
    await finished(retry.json().build.id);

    // The site's first delivery, after a restart on the same work dir.
    const siteBuilds = await buildsOfSite();
    const firstSite = siteBuilds.filter((b) => b.trigger?.forge === 'github' && b.trigger.ref === 'main').at(-1)!;
    await server.stop();
    answers.push(server.log());
    server = await startServer({ workDir: server.workDir, args: ['--api-token', FULL, '--projects', file, '--public-url', 'https://ci.example.com'], env: env() });
    const sha1 = firstSite.revision as string;
    const again = await send('github', 'site', 'push', githubPush('refs/heads/main', sha1, { sha: sha1, message: 'first change' }), { delivery: firstSite.trigger.delivery });
    assert.equal(again.status, 200);
    assert.equal(again.json().build.id, firstSite.id);
  });

  it('a build abandoned by a server killed mid-build gets an error status when the server is back', async () => {
    const sha = slow.head();
    const res = await send('github', 'slow', 'push', githubPush('refs/heads/main', sha, { sha, message: 'slow' }, { repository: { full_name: 'acme/slow' } }));
    assert.equal(res.status, 202, res.text);
    const id = res.json().build.id as string;
    await eventually(async () => forge.for(sha).length === 1 && (await build(id)).steps?.some((s: { name: string }) => s.name === 'build.sh'), 'the build to run build.sh with its pending status posted', 60_000);
    answers.push(server.log());
    await server.stop('SIGKILL');
    server = await startServer({ workDir: server.workDir, args: ['--api-token', FULL, '--projects', file, '--public-url', 'https://ci.example.com'], env: env() });
    assert.equal((await build(id)).status, 'abandoned');
    const calls = await statusesFor(sha, 'error');
    assert.deepEqual(calls.map((c) => c.body.state), ['pending', 'error']);
    assert.match(calls[1].body.description, /^abandoned/);
    assert.equal(calls[1].body.target_url, `https://ci.example.com/builds/${id}`);
  });

  it('a cancelled build gets an error status saying so', async () => {
    const sha = slow.commit({ 'notes.txt': 'cancel me\n' }, 'slow again');
    const res = await send('github', 'slow', 'push', githubPush('refs/heads/main', sha, { sha, message: 'slow again' }, { repository: { full_name: 'acme/slow' } }));
    assert.equal(res.status, 202, res.text);
    const id = res.json().build.id as string;
    await eventually(async () => (await build(id)).steps?.some((s: { name: string }) => s.name === 'build.sh'), 'the build to run build.sh', 90_000);
    const cancel = await fetch(`${base()}/api/v1/builds/${id}/cancel`, { method: 'POST', headers: { Authorization: `Bearer ${FULL}` } });
    assert.equal(cancel.status, 202);
    assert.equal((await finished(id)).status, 'cancelled');
    const calls = await statusesFor(sha, 'error');
    assert.deepEqual(calls.map((c) => [c.body.state, c.body.description]), [['pending', calls[0].body.description], ['error', 'cancelled']]);
  });

  it('public_badge: /badge/site.svg without a token; another project\'s badge still needs one', async () => {
    const badge = await fetch(`${base()}/badge/site.svg`);
    assert.equal(badge.status, 200);
    assert.match(await badge.text(), /<svg/);
    assert.equal((await fetch(`${base()}/badge/broken.svg`)).status, 401);
  });

  it('no webhook secret, status token, key or password in any answer, page, log, stored file or status body', () => {
    const secrets = [...Object.values(SECRETS), ...Object.values(TOKENS), ...secretForms()];
    const bodies = forge.received.map((r) => JSON.stringify(r.body));
    for (const text of [...answers, ...bodies, server.log(), ...storedFiles(server.workDir)]) {
      for (const secret of secrets) assert.ok(!text.includes(secret), `a secret leaked:\n${text.slice(0, 2000)}`);
    }
  });
});
