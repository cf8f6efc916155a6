import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { assertNoSecrets, unique } from '../helpers/build.js';
import { keyBase64, loginCmd, testEnv } from '../helpers/env.js';
import { eventually, suiteRepos } from '../helpers/fixtures.js';
import { removeAll, staticSite } from '../helpers/repos.js';
import { startServer, type ServerProcess } from '../helpers/server.js';

// Functions passed to page.evaluate run in the browser; this project compiles without the DOM library.
declare const document: any;
declare const window: any;

const FULL = 'monitor-full-token-5d1c9e7a3b';
const READ = 'monitor-read-token-8e2f0a6c4d';
/** Debian's chromium (test/env/up.sh installs it); playwright's own browser download cannot work here. */
const CHROMIUM = process.env.BUILDBOT_CHROMIUM ?? '/usr/bin/chromium';
/** Where screenshots go when set (to look at the pages); none are taken otherwise. */
const SHOTS = process.env.BUILDBOT_SCREENSHOTS;

/** A build.sh part that writes coloured, progress and stderr lines over a few seconds. */
const COLOURFUL = [
  'printf "\\033[32mgreen start\\033[0m plain\\n"',
  'printf "\\033[1;31mbold red\\033[0m <b>not markup</b> & more\\n"',
  'echo "to stderr: careful" >&2',
  'for p in 10 40 70 100; do printf "progress %3s%%\\r" $p; sleep 0.3; done; printf "\\n"',
  'i=1; while [ $i -le 12 ]; do printf "\\033[36mtick %s\\033[0m\\n" $i; i=$((i+1)); sleep 0.5; done',
  'echo "last line"',
].join('\n');

describe('the web monitor in a real browser', () => {
  let server: ServerProcess;
  let browser: Browser;
  const repoWith = suiteRepos();
  const base = () => `http://127.0.0.1:${server.httpPort}`;
  /** Every page and stream the browser was shown: none may hold a secret or a token. */
  const shown: string[] = [];
  /** Script errors and console errors (CSP refusals, failed loads) of signed-in pages: there must be none. */
  const consoleErrors: string[] = [];

  const api = async (p: string, init: RequestInit = {}) => {
    const headers = new Headers(init.headers);
    headers.set('Authorization', `Bearer ${FULL}`);
    const res = await fetch(`${base()}${p}`, { ...init, headers });
    return { status: res.status, json: (await res.json()) as Record<string, any> };
  };
  const submit = async (service: string, repoUrl: string) => {
    const res = await api('/api/v1/builds', {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ service_id: service, repo: repoUrl, revision: 'main', image: `${testEnv().registry}/${service}`, tags: ['1.0.0', 'latest'], repo_auth_key: keyBase64(), docker_login_cmd: loginCmd() }),
    });
    assert.equal(res.status, 202);
    return res.json.id as string;
  };
  const statusOf = async (id: string) => (await api(`/api/v1/builds/${id}`)).json.status as string;

  async function signedIn(token: string, viewport = { width: 1280, height: 900 }): Promise<{ context: BrowserContext; page: Page }> {
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    page.on('pageerror', (err) => consoleErrors.push(`script error on ${page.url()}: ${err.message}`));
    // A Content-Security-Policy refusal or a failed load shows here.
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(`${page.url()}: ${message.text()}`);
    });
    await page.goto(`${base()}/signin`);
    await page.fill('#token', token);
    await page.press('#token', 'Enter');
    await page.waitForURL(`${base()}/`);
    return { context, page };
  }
  const keep = async (page: Page) => shown.push(await page.content());
  const shot = async (page: Page, name: string) => {
    if (!SHOTS) return;
    mkdirSync(SHOTS, { recursive: true });
    await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  };

  before(async () => {
    server = await startServer({ args: ['--max-builds', '2', '--api-token', FULL, '--api-read-token', READ] });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'],
    });
  });
  after(async () => {
    await browser?.close();
    await server?.stop();
    if (server) removeAll(server.workDir);
    // Neither a page nor a stream ever held a secret of a build, nor an API token.
    assert.deepEqual(consoleErrors, []);
    assertNoSecrets(...shown);
    for (const text of shown) assert.ok(!text.includes(FULL) && !text.includes(READ), 'an API token was shown on a page');
  });

  it('refuses a wrong token, signs in with a read token (HttpOnly, SameSite=Strict, no token in the cookie) and out', async () => {
    const context = await browser.newContext();
    const page = await context.newPage();
    await page.goto(`${base()}/`);
    assert.equal(new URL(page.url()).pathname, '/signin', 'a visitor without a session is sent to sign in');

    await page.fill('#token', 'not-a-token-of-this-server');
    const [refused] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/signin') && r.request().method() === 'POST'), page.press('#token', 'Enter')]);
    assert.equal(refused.status(), 401);
    await page.waitForSelector('#signin-error');
    assert.match(await page.textContent('#signin-error') ?? '', /not valid for this server.*--api-token/);
    assert.ok(!(await page.content()).includes('not-a-token-of-this-server'), 'the wrong token is not echoed');
    assert.deepEqual(await context.cookies(), []);

    // Keyboard only: type the token, Enter.
    await page.focus('#token');
    await page.keyboard.type(READ);
    await page.keyboard.press('Enter');
    await page.waitForURL(`${base()}/`);
    const [cookie] = await context.cookies();
    assert.equal(cookie.name, 'buildbot_session');
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, 'Strict');
    assert.ok(!cookie.value.includes(READ));
    assert.equal(await page.textContent('.access'), 'read only');
    assert.equal(await page.evaluate(() => document.cookie), '', 'scripts cannot read the session');
    // No build yet: the empty state shows the commands that start one.
    assert.match(await page.textContent('#empty') ?? '', /No builds yet[\s\S]*buildbot\.sh --server http:\/\/127\.0\.0\.1:\d+[\s\S]*\/api\/v1\/builds/);
    // …over SSH on this server's own port, with the login command quoted twice as ssh needs it.
    const empty = await page.textContent('#empty') ?? '';
    assert.ok(empty.includes(`ssh -p ${server.port} 127.0.0.1 buildbot.sh`), empty);
    assert.ok(empty.includes(`--docker_login_cmd "'docker login -u ci`), empty);
    await keep(page);
    await shot(page, 'empty');

    await page.click('text=Sign out');
    await page.waitForURL(/\/signin$/);
    assert.deepEqual(await context.cookies(), []);
    await page.goto(`${base()}/`);
    assert.equal(new URL(page.url()).pathname, '/signin');
    // The old cookie is refused even when a browser sends it again.
    await context.addCookies([{ ...cookie }]);
    const again = await page.request.get(`${base()}/events`);
    assert.equal(again.status(), 401);
    await context.close();
  });

  it('shows a build on / as it starts and turns it from running to succeeded without a reload', async () => {
    const { context, page } = await signedIn(FULL);
    await page.evaluate(() => ((window as unknown as { notReloaded: boolean }).notReloaded = true));
    await page.waitForSelector('#live-state.on');
    const service = unique('mon-list');
    const repo = repoWith('mon-list', staticSite({ buildExtra: COLOURFUL }));
    const id = await submit(service, repo.url);

    const row = `#b-${id}`;
    await page.waitForSelector(`#group-running ${row}`, { timeout: 60_000 });
    assert.match(await page.textContent(`${row} .status`) ?? '', /Running/);
    assert.match(await page.textContent(`${row} .c-build`) ?? '', new RegExp(service));
    assert.match(await page.textContent(`${row} .c-image`) ?? '', /1\.0\.0\s*latest/);
    assert.equal(await page.textContent(`${row} .source`), 'http');
    // The elapsed time ticks.
    const t1 = await page.textContent(`${row} .ticking`);
    await page.waitForFunction(([sel, before]) => document.querySelector(sel)?.textContent !== before, [`${row} .ticking`, t1] as const, { timeout: 5_000 });
    await shot(page, 'list-running');

    await page.waitForSelector(`#group-recent ${row}.st-succeeded`, { timeout: 120_000 });
    assert.match(await page.textContent(`${row} .status`) ?? '', /Succeeded/);
    assert.ok(await page.evaluate(() => (window as unknown as { notReloaded?: boolean }).notReloaded), 'the page was not reloaded');
    assert.equal(await page.isHidden('#group-running'), true);

    // The filter lives in the URL and keeps applying to live rows.
    await page.selectOption('select[name=status]', 'failed');
    await page.waitForURL(/status=failed/);
    assert.equal(await page.$(row), null);
    await page.goto(`${base()}/?service_id=${service}`);
    assert.ok(await page.$(row));
    await keep(page);
    await shot(page, 'list');

    // The badge of the service's last build.
    const badge = await page.request.get(`${base()}/badge/${service}.svg`);
    assert.equal(badge.status(), 200);
    assert.match(badge.headers()['content-type'], /image\/svg\+xml/);
    assert.match(await badge.text(), /passing/);
    assert.match(await (await page.request.get(`${base()}/badge/no-such-service.svg`)).text(), /no builds/);
    await context.close();
  });

  it('opens a running build: log lines arrive live with colours, stderr apart, progress collapsed, line anchors jump', async () => {
    const { context, page } = await signedIn(READ, { width: 1280, height: 600 });
    const service = unique('mon-log');
    const repo = repoWith('mon-log', staticSite({ buildExtra: COLOURFUL }));
    const id = await submit(service, repo.url);
    await eventually(async () => (await statusOf(id)) === 'running', 'the build to run', 60_000);
    await page.goto(`${base()}/builds/${id}`);
    assert.equal(await page.$('#cancel'), null, 'a read-only session has no cancel button');

    // Lines arrive while the build runs, and follow mode keeps the newest in view.
    await page.waitForSelector('.line .ansi-cyan-fg', { timeout: 90_000 });
    if (!(await page.$('.exit-line'))) {
      assert.equal(await page.getAttribute('#follow', 'aria-pressed'), 'true', 'a running build opens in follow mode');
      // Scrolling up leaves follow mode; back at the bottom it resumes.
      await page.evaluate(() => window.scrollTo(0, 0));
      await page.waitForSelector('#follow[aria-pressed="false"]', { timeout: 5_000 });
      if (!(await page.$('.exit-line'))) {
        await page.keyboard.press('End');
        await page.waitForSelector('#follow[aria-pressed="true"], .exit-line', { timeout: 5_000 });
      }
    }
    const early = await page.$$eval('.line', (lines) => lines.length);
    await page.waitForFunction((n) => document.querySelectorAll('.line').length > n, early, { timeout: 20_000 });
    await page.waitForSelector('.exit-line', { timeout: 120_000 });
    assert.equal(await page.textContent('.exit-line'), '✓ succeeded · exit code 0');

    // Colours by ansi_up, the log's own markup as text.
    assert.equal(await page.textContent('.ansi-green-fg'), 'green start');
    const boldRed = await page.$eval('.ansi-red-fg', (el) => ({ text: el.textContent, style: el.getAttribute('style') }));
    assert.deepEqual(boldRed, { text: 'bold red', style: 'font-weight:bold' });
    assert.equal(await page.$('.txt b'), null, 'markup in the log is text, not markup');
    assert.ok((await page.textContent('#log'))!.includes('<b>not markup</b> & more'));
    // stderr set apart; the progress line shows its last version only.
    assert.ok(await page.$('.line.err:has-text("to stderr: careful")'), 'the stderr line is marked as stderr');
    assert.equal(await page.$('.line:not(.err):has-text("to stderr: careful")'), null);
    const texts = await page.$$eval('.line .txt', (els) => els.map((e) => e.textContent));
    assert.ok(texts.includes('progress 100%'), texts.join('\n'));
    assert.ok(!texts.some((t) => t?.includes('progress  10%')), 'no line per progress version');

    // The header caught up without a reload: status, exit code, digest; done steps folded.
    await page.waitForSelector('#build-header.st-succeeded');
    assert.match(await page.textContent('#build-header') ?? '', /Exit code\s*0[\s\S]*Digest\s*sha256:[0-9a-f]{64}/);
    assert.equal(await page.$eval('#step-checkout', (d: any) => d.open), false);
    assert.match(await page.textContent('#step-build-sh summary') ?? '', /build\.sh/);

    // Line anchors: a click sets #L…, a fresh page opens at it with its section unfolded.
    const target = await page.$eval('#step-build-sh .line.err', (el) => Number(el.id.slice(1)));
    assert.equal(await page.$eval('#step-build-sh', (d: any) => d.open), false, 'a step that succeeded is folded');
    await page.click('#step-build-sh summary');
    await page.click(`#L${target} .ln`);
    assert.equal(new URL(page.url()).hash, `#L${target}`);
    await page.waitForSelector(`#L${target}.target`);
    await keep(page);
    await shot(page, 'build');

    const fresh = await context.newPage();
    await fresh.goto(`${base()}/builds/${id}#L${target}`);
    await fresh.waitForSelector(`#L${target}.target`);
    assert.ok(await fresh.$eval(`#L${target}`, (el) => el.closest('details')!.open));
    assert.ok(await fresh.isVisible(`#L${target}`));
    const inView = await fresh.$eval(`#L${target}`, (el) => { const r = el.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; });
    assert.ok(inView, 'the anchored line is scrolled into view');

    // The raw log, as a download.
    const raw = await page.request.get(`${base()}/builds/${id}/log?download=1`);
    assert.match(raw.headers()['content-disposition'], /attachment; filename="buildbot-.*\.log"/);
    const rawText = await raw.text();
    assert.match(rawText, /\x1b\[32mgreen start/);
    shown.push(rawText);
    await context.close();
  });

  it('cancels a slow build from the page with a full-access session; a forged cancel is refused', async () => {
    const { context, page } = await signedIn(FULL);
    const service = unique('mon-cancel');
    const repo = repoWith('mon-cancel', staticSite({ buildExtra: 'echo "sleeping"; sleep 600' }));
    const id = await submit(service, repo.url);
    await page.goto(`${base()}/builds/${id}`);
    await page.waitForSelector('text=sleeping', { timeout: 90_000 });

    // Without the page's CSRF token the cookie alone does not cancel.
    const forged = await page.request.post(`${base()}/builds/${id}/cancel`, { form: { csrf: 'x' } });
    assert.equal(forged.status(), 403);
    assert.equal(await statusOf(id), 'running');

    // The page asks first: dismissed, nothing happens.
    const asked: string[] = [];
    page.once('dialog', (dialog) => { asked.push(dialog.message()); void dialog.dismiss(); });
    await page.click('#cancel');
    assert.match(asked[0] ?? '', new RegExp(`^Cancel build ${id}\\?`));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(await statusOf(id), 'running', 'a dismissed question cancels nothing');

    page.once('dialog', (dialog) => void dialog.accept());
    await page.click('#cancel');
    await page.waitForSelector('#build-header.st-cancelled', { timeout: 60_000 });
    await page.waitForSelector('.exit-line');
    assert.equal(await page.textContent('.exit-line'), '✕ cancelled · exit code 130');
    assert.equal(await statusOf(id), 'cancelled');
    assert.equal(await page.$('#cancel'), null);
    // The failed step is open.
    assert.equal(await page.$eval('#step-build-sh', (d: any) => d.open), true);
    await keep(page);
    await shot(page, 'build-cancelled');
    await context.close();
  });

  it('shows a queued build with its place in line, and moves it to running when a slot frees', async () => {
    const { context, page } = await signedIn(READ);
    const repo = repoWith('mon-queue', staticSite({ buildExtra: 'echo "holding a slot"; sleep 600' }));
    // --max-builds 2: two slow builds hold both slots, the third waits.
    const holders = [await submit(unique('mon-hold'), repo.url), await submit(unique('mon-hold'), repo.url)];
    const waiting = await submit(unique('mon-wait'), repo.url);
    await page.waitForSelector(`#group-queued #b-${waiting}`, { timeout: 30_000 });
    await page.waitForFunction((sel) => /1st in line/.test(document.querySelector(sel)?.textContent ?? ''), `#b-${waiting} .sub`, { timeout: 30_000 });
    assert.match(await page.textContent(`#b-${waiting} .status`) ?? '', /Queued/);
    assert.match(await page.textContent('#h-queued') ?? '', /Queued\s*1/);
    for (const id of holders) await page.waitForSelector(`#group-running #b-${id}`, { timeout: 60_000 });
    await keep(page);
    await shot(page, 'list-queued');

    assert.equal((await api(`/api/v1/builds/${holders[0]}/cancel`, { method: 'POST' })).status, 202);
    await page.waitForSelector(`#group-recent #b-${holders[0]}.st-cancelled`, { timeout: 60_000 });
    await page.waitForSelector(`#group-running #b-${waiting}`, { timeout: 60_000 });
    assert.ok(await page.isHidden('#group-queued'), 'the queued group is hidden once empty');
    for (const id of [holders[1], waiting]) assert.equal((await api(`/api/v1/builds/${id}/cancel`, { method: 'POST' })).status, 202);
    for (const id of [holders[1], waiting]) await eventually(async () => (await statusOf(id)) === 'cancelled', `build ${id} to be cancelled`, 60_000);
    await context.close();
  });

  it('opens a huge log at its tail with the whole log\'s line numbers, and offers the rest', async () => {
    const { context, page } = await signedIn(READ);
    const service = unique('mon-huge');
    const repo = repoWith('mon-huge', staticSite({ buildExtra: 'i=1; while [ $i -le 20000 ]; do echo "line $i of a long log .............................................."; i=$((i+1)); done' }));
    const id = await submit(service, repo.url);
    await eventually(async () => (await statusOf(id)) === 'succeeded', 'the build to succeed', 120_000);
    await page.goto(`${base()}/builds/${id}`);
    await page.waitForSelector('.exit-line', { timeout: 30_000 });
    assert.match(await page.textContent('#tail-note') ?? '', /are not shown/);
    const first = await page.$eval('.line', (el) => Number(el.id.slice(1)));
    assert.ok(first > 1000, `the page starts at line ${first}`);
    const lines = await page.$$eval('.line', (els) => els.length);
    assert.ok(lines < 12_000, `${lines} lines rendered`);
    const n = await page.$eval('.line:has-text("line 20000 of")', (el) => Number(el.id.slice(1)));

    await page.click('text=Show the whole log');
    await page.waitForSelector('.exit-line', { timeout: 60_000 });
    assert.ok(await page.$('#L1'));
    // The same line has the same number in both views.
    assert.equal(await page.$eval('.line:has-text("line 20000 of")', (el) => Number(el.id.slice(1))), n);
    await context.close();
  });

  it('works at phone width', async () => {
    const { context, page } = await signedIn(READ, { width: 390, height: 844 });
    await page.waitForSelector('tr.build');
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 0, `the list is ${overflow}px wider than the phone`);
    await shot(page, 'list-phone');
    await page.click('tr.build .svc');
    await page.waitForSelector('.exit-line', { timeout: 30_000 });
    const buildOverflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(buildOverflow <= 0, `the build page is ${buildOverflow}px wider than the phone`);
    await keep(page);
    await shot(page, 'build-phone');
    await context.close();
  });
});
