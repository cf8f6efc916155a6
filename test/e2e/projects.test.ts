import assert from 'node:assert/strict';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium } from 'playwright-core';
import { assertNoSecrets, secretForms, unique } from '../helpers/build.js';
import { spawnRunning } from '../helpers/cli.js';
import { keyPath, loginCmd, testEnv } from '../helpers/env.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { registryTags } from '../helpers/registry.js';
import { removeAll, staticSite, type GitRepo } from '../helpers/repos.js';
import { projectsYaml, siteProject, storedFiles } from '../helpers/projects.js';
import { BUILDBOT_SERVER, ssh, startServer, type ServerProcess } from '../helpers/server.js';

const FULL = 'projects-full-token-4c7e1a9b2d';
const READ = 'projects-read-token-9a3f6e0c1b';
const HOOK_SECRET = 'gh-hook-secret-7Yq2Lw9Xv4';
const STATUS_TOKEN = 'ghs_statusTokenZ8k3Pq1Rr5';

describe('projects: the file, builds on demand over HTTP and SSH, SIGHUP', () => {
  const repoWith = suiteRepos();
  let server: ServerProcess;
  let file: string;
  let repo: GitRepo;
  let image: string;
  const seen: string[] = [];
  const base = () => `http://127.0.0.1:${server.httpPort}`;
  const call = async (p: string, init: RequestInit & { token?: string } = {}) => {
    const headers = new Headers(init.headers);
    headers.set('Authorization', `Bearer ${init.token ?? FULL}`);
    const res = await fetch(`${base()}${p}`, { ...init, headers });
    const text = await res.text();
    seen.push(text);
    return { status: res.status, text, json: () => JSON.parse(text) as Record<string, any> };
  };
  const post = (p: string, body: unknown) => call(p, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body) });
  const waitFor = (id: string, status: string) => eventually(async () => (await call(`/api/v1/builds/${id}`, { token: READ })).json().status === status, `build ${id} to be ${status}`, 120_000);
  const env = () => ({ TEST_LOGIN: loginCmd(), GH_SECRET: HOOK_SECRET, GH_TOKEN: STATUS_TOKEN });
  const secrets = () => [...secretForms(), HOOK_SECRET, STATUS_TOKEN];

  before(async () => {
    repo = repoWith('proj-site', staticSite());
    image = unique('proj-site');
    file = path.join(testEnv().dir, `${unique('projects')}.yaml`);
    writeFileSync(file, projectsYaml({ site: siteProject(repo, image, `
webhooks:
  github: {repository: acme/site, secret: {env: GH_SECRET}, status: {api_url: "http://127.0.0.1:3", token: {env: GH_TOKEN}}}`) }));
    server = await startServer({ args: ['--api-token', FULL, '--api-read-token', READ, '--projects', file], env: env() });
  });
  after(async () => {
    await server?.stop();
    if (server) removeAll(server.workDir);
  });

  it('--check-projects: 0 for a valid file; 2 naming the key and its line, never the value', async () => {
    const check = (f: string, extraEnv: Record<string, string> = env()) =>
      spawnRunning(BUILDBOT_SERVER, ['--check-projects', f], { env: { PATH: process.env.PATH ?? '', ...extraEnv } }).done;
    const ok = await check(file);
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /1 project, valid/);

    const variants: Array<[string, (text: string) => string, RegExp, Record<string, string>?]> = [
      ['inline secret', (t) => t.replace('{env: GH_SECRET}', `"${HOOK_SECRET}"`), /line 15: projects\.site\.webhooks\.github\.secret: a secret is given as \{env: NAME\} or \{file: PATH\}, never written inline/],
      ['unknown key', (t) => t.replace('    image:', '    colour: blue\n    image:'), /line 6: projects\.site\.colour: unknown key/],
      ['unset variable', (t) => t, /line 5: projects\.site\.docker_login_cmd: the environment variable TEST_LOGIN is not set or empty/, { GH_SECRET: HOOK_SECRET, GH_TOKEN: STATUS_TOKEN }],
      ['unknown placeholder', (t) => t.replace('{version}"]', '{versio}"]'), /line 12: projects\.site\.on_tag\.tags: unknown placeholder \{versio\}/],
      ['bad YAML', (t) => `${t}  broken: [\n`, /line \d+: not valid YAML \(\w+\)/],
      ['bad image', (t) => t.replace(/image: .*/, 'image: -nope'), /projects\.site: .*image/],
      ['missing image', (t) => t.replace(/ {4}image: .*\n/, ''), /projects\.site\.image: missing/],
    ];
    for (const [what, change, expected, extraEnv] of variants) {
      const bad = `${file}.${what.replace(/ /g, '-')}.yaml`;
      writeFileSync(bad, change(readFileSync(file, 'utf8')));
      const result = await check(bad, extraEnv);
      assert.equal(result.code, 2, `${what}: ${result.stderr}`);
      assert.match(result.stderr, expected, what);
      assert.ok(result.stderr.includes(bad), `${what}: the file is named`);
      for (const secret of secrets()) assert.ok(!result.stderr.includes(secret), `${what}: no value is echoed`);
    }
    // The server itself refuses to start on a bad file, exit 2.
    const inline = `${file}.inline-secret.yaml`;
    const refused = await spawnRunning(BUILDBOT_SERVER, ['--listen', '127.0.0.1:0', '--http-listen', 'none', '--authorized-key', `@${keyPath('client_ed25519.pub')}`, '--work-dir', server.workDir, '--projects', inline], { env: { PATH: process.env.PATH ?? '', ...env() } }).done;
    assert.equal(refused.code, 2);
    assert.match(refused.stderr, /projects\.site\.webhooks\.github\.secret/);
    assert.ok(!refused.stderr.includes(HOOK_SECRET));
  });

  it('builds a project on demand over HTTP: 202 {build, url}, the mapping\'s tags with {short_sha}, source "project"', async () => {
    const listed = await call('/api/v1/projects', { token: READ });
    assert.equal(listed.status, 200);
    const site = listed.json().projects.find((p: { name: string }) => p.name === 'site');
    assert.deepEqual(site.on_branch, { main: ['latest', 'main-{short_sha}'], 'feature/*': ['{branch}'] });
    assert.equal(site.webhooks.github.url, `${base()}/hooks/github/site`);
    assert.equal(site.webhooks.github.status.context, 'buildbot/site');

    assert.equal((await call('/api/v1/projects/site/builds', { token: READ, method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"ref":"main"}' })).status, 403);
    assert.equal((await post('/api/v1/projects/nope/builds', { ref: 'main' })).status, 404);
    const unmapped = await post('/api/v1/projects/site/builds', { ref: 'release-x' });
    assert.equal(unmapped.status, 400);
    assert.equal(unmapped.json().error.code, 'ENOMAPPING');
    assert.equal(unmapped.json().error.field, 'tags');
    assert.equal((await post('/api/v1/projects/site/builds', { ref: '-x' })).json().error.field, 'ref');
    assert.equal((await post('/api/v1/projects/site/builds', { ref: 'main', colour: 1 })).json().error.field, 'colour');

    const res = await post('/api/v1/projects/site/builds', { ref: 'main' });
    assert.equal(res.status, 202, res.text);
    const { build, url } = res.json();
    assert.equal(url, `${base()}/builds/${build.id}`);
    assert.equal(build.source, 'project');
    assert.deepEqual(build.trigger, { project: 'site', ref: 'main', via: 'http' });
    await waitFor(build.id, 'succeeded');
    const done = (await call(`/api/v1/builds/${build.id}`, { token: READ })).json();
    const short = repo.head().slice(0, 7);
    assert.equal(done.commit, repo.head());
    assert.deepEqual(done.tags, ['latest', `main-${short}`], 'the tags with the commit filled in');
    assert.deepEqual(await registryTags(image), ['latest', `main-${short}`]);

    const again = (await call('/api/v1/projects', { token: READ })).json().projects.find((p: { name: string }) => p.name === 'site');
    assert.equal(again.last_builds.main.id, build.id);
  });

  it('builds a project over SSH with --project, the caller sending no key and no password; --tag overrides', async () => {
    const result = await ssh(server, ['buildbot.sh', '--project', 'site', '--revision', 'main', '--tag', 'from-ssh']);
    assert.equal(result.code, 0, result.stderr);
    assert.match(result.stdout, /# push:/);
    assert.ok((await registryTags(image)).includes('from-ssh'));
    const listed = (await call(`/api/v1/builds?service_id=site`, { token: READ })).json().builds;
    assert.deepEqual(listed[0].trigger, { project: 'site', ref: 'main', via: 'ssh' });
    assert.equal(listed[0].source, 'project');

    const unknown = await ssh(server, ['buildbot.sh', '--project', 'nope', '--revision', 'main']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /no project "nope"/);
    const extra = await ssh(server, ['buildbot.sh', '--project', 'site', '--revision', 'main', '--repo', 'x']);
    assert.equal(extra.code, 2);
    assert.match(extra.stderr, /--project takes only --revision and --tag/);
    const unmapped = await ssh(server, ['buildbot.sh', '--project', 'site', '--revision', 'nightly']);
    assert.equal(unmapped.code, 2);
    assert.match(unmapped.stderr, /maps no tags for "nightly".* with --tag/);
    assertNoSecrets(result.stdout, result.stderr);
  });

  it('SIGHUP reloads the file; a bad file keeps the old projects and the log says why', async () => {
    const good = readFileSync(file, 'utf8');
    writeFileSync(file, `${good}  docs:\n${siteProject(repo, `${image}-docs`).trim().split('\n').map((l) => `    ${l}`).join('\n')}\n`);
    server.child.kill('SIGHUP');
    await server.waitForLog(/projects-reloaded .*projects=2/);
    const names = async () => (await call('/api/v1/projects', { token: READ })).json().projects.map((p: { name: string }) => p.name);
    assert.deepEqual(await names(), ['site', 'docs']);

    writeFileSync(file, good.replace('{env: GH_SECRET}', `"${HOOK_SECRET}"`));
    server.child.kill('SIGHUP');
    await server.waitForLog(/projects-reload-failed .*line 15.*kept=2/);
    assert.deepEqual(await names(), ['site', 'docs'], 'the old projects stay');
    writeFileSync(file, good);
  });

  it('the monitor\'s projects page: a Build form for a full-access session only, which starts the build', async () => {
    const browser = await chromium.launch({
      executablePath: process.env.BUILDBOT_CHROMIUM ?? '/usr/bin/chromium',
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
    try {
      const signedIn = async (token: string) => {
        const context = await browser.newContext();
        const page = await context.newPage();
        await page.goto(`${base()}/signin?next=/projects`);
        await page.fill('#token', token);
        await page.press('#token', 'Enter');
        await page.waitForURL(`${base()}/projects`);
        return { context, page };
      };
      const reader = await signedIn(READ);
      assert.equal(await reader.page.locator('#project-site h2').textContent(), 'site');
      assert.equal(await reader.page.locator('form.build-form').count(), 0, 'no Build form for a read-only session');
      seen.push(await reader.page.content());
      await reader.context.close();

      const { context, page } = await signedIn(FULL);
      assert.match(await page.locator('#project-site').textContent() ?? '', /latest.*main-\{short_sha\}/s);
      assert.equal(await page.locator('#project-site a[href^="/builds/"]').first().isVisible(), true, 'the last build per ref links to it');
      await page.fill('#ref-site', 'nightly');
      await page.click('#project-site button[type=submit]');
      await page.waitForSelector('#build-error');
      assert.match(await page.textContent('#build-error') ?? '', /maps no tags for "nightly"/);
      seen.push(await page.content());

      await page.fill('#ref-site', 'main');
      await page.click('#project-site button[type=submit]');
      await page.waitForURL(/\/builds\/[0-9a-z]{17}$/);
      const id = page.url().split('/').pop()!;
      const summary = (await call(`/api/v1/builds/${id}`, { token: READ })).json();
      assert.deepEqual(summary.trigger, { project: 'site', ref: 'main', via: 'monitor' });
      await waitFor(id, 'succeeded');
      seen.push(await page.content());
      await context.close();
    } finally {
      await browser.close();
    }
  });

  it('no secret of the file in any answer, the server log or a stored file', () => {
    for (const text of [...seen, server.log(), ...storedFiles(server.workDir)]) {
      for (const secret of secrets()) assert.ok(!text.includes(secret), `a secret leaked:\n${text.slice(0, 2000)}`);
    }
  });
});
