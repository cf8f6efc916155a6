import type { IncomingMessage, ServerResponse } from 'node:http';
import { isServiceId } from '../../../request/validate.js';
import type { Build } from '../../../service/build.js';
import { isFinal, type BuildRecord, type BuildStatus, type BuildSummary, type QueuedRecord } from '../../../model/build.js';
import type { HttpDeps } from '../respond.js';
import { clientAddress, HTTP_LIMIT_DEFAULTS, RateLimit } from '../limits.js';
import { admitStream, followLive, pacerFor, replayStored, SSE_FORMAT, SSE_LINES, type Pacer } from '../stream.js';
import { serveAsset } from './assets.js';
import { badgeSvg, badgeWord } from './badge.js';
import { html } from './html.js';
import { LogShape } from './log-model.js';
import { buildHeader, buildPage, buildRow, errorPage, groupOf, listPage, signInPage, STATUSES, type LogStart, type RowExtra, type Viewer } from './pages.js';
import { sessionCookie, Sessions, SESSION_SECONDS } from './session.js';
import { projectsPage } from './projects-page.js';
import { projectView } from '../projects.js';
import { engineList, setDraining } from '../engines.js';
import { HttpError } from '../body.js';
import { errors, isBuildError } from '../../../model/errors.js';

/** A page opens a huge log at its last this-many bytes of output (the rest on request). */
export const TAIL_BYTES = 512 * 1024;
const LIST_LIMIT = 100;
const MAX_FORM_BYTES = 8 * 1024;
/** How often the open list pages are told of an engine going down or up when no build moves. */
const ENGINE_POLL_MS = 2000;
const BUILD_ID = /^[0-9a-z]{9}[0-9a-f]{8}$/;

/**
 * The web monitor (issue 12): server-rendered pages on the HTTP API's listener, live through
 * EventSource. One per HTTP server: it watches the build service for state changes (never for
 * output, which only build pages follow) and fans them out to the open list pages.
 */
export class Monitor {
  readonly sessions: Sessions;
  private readonly listeners = new Map<ServerResponse, Pacer>();
  private readonly pending = new Map<string, Build>();
  private flushScheduled = false;
  private readonly startCache = new Map<string, LogStart>();
  private readonly startPending = new Map<string, Promise<LogStart>>();
  private readonly signIns: RateLimit;
  private engineTimer?: NodeJS.Timeout;
  /** The engines as last sent to the list pages (a page that connects later gets them from its HTML). */
  private enginesSent = '';

  constructor(private readonly deps: HttpDeps) {
    this.sessions = new Sessions(deps.tokens);
    this.signIns = new RateLimit(deps.limits?.signInsPerMinute ?? HTTP_LIMIT_DEFAULTS.signInsPerMinute, 60_000);
    deps.service.observe({ changed: (build) => this.changed(build) });
  }

  /** Serves a monitor route; false when the path is not one of the monitor's. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const path = url.pathname;
    // true after a 405 too: the request is answered either way.
    if (path.startsWith('/assets/')) return !this.method(req, res, ['GET', 'HEAD']) || serveAsset(req, res, path.slice('/assets/'.length));
    if (path === '/signin') return this.signIn(req, res, url);
    if (path === '/signout') return this.signOut(req, res);
    if (path === '/' || path === '/events') {
      const viewer = this.gate(req, res, url, path === '/');
      if (!viewer || !this.method(req, res, ['GET', 'HEAD'])) return true;
      return path === '/' ? this.list(req, res, url, viewer) : this.listEvents(req, res, viewer);
    }
    if (path === '/projects' || path.startsWith('/projects/')) return this.projects(req, res, url);
    const engine = /^\/engines\/([^/]{1,200})\/(drain|resume)$/.exec(path);
    if (engine) return this.drain(req, res, url, decodeURIComponentSafe(engine[1]), engine[2] === 'drain');
    const badge = /^\/badge\/([^/]{1,200})\.svg$/.exec(path);
    if (badge) {
      // A project with public_badge: true shows its badge to anyone (a README on the forge).
      const name = decodeURIComponentSafe(badge[1]);
      if ((!this.deps.projects?.get(name)?.publicBadge && !this.gate(req, res, url, false)) || !this.method(req, res, ['GET', 'HEAD'])) return true;
      return this.badge(res, name);
    }
    const build = /^\/builds\/([^/]{1,64})(?:\/(events|log|cancel))?$/.exec(path);
    if (!build) return false;
    const [, id, action] = build;
    const viewer = this.gate(req, res, url, !action);
    if (!viewer || !this.method(req, res, action === 'cancel' ? ['POST'] : ['GET', 'HEAD'])) return true;
    const stored = BUILD_ID.test(id) ? this.deps.history.get(id) : undefined;
    const statuses = stored && this.deps.projects?.statuses.of(stored.id);
    const summary = stored && statuses?.length ? { ...stored, commit_statuses: statuses } : stored;
    if (!summary) {
      const message = html`There is no build ${BUILD_ID.test(id) ? id : 'with that id'} on this server: it may have been pruned (the history keeps the newest builds of each service). <a href="/">See the builds there are</a>.`;
      if (action) return this.plain(res, 404, `no build ${BUILD_ID.test(id) ? id : 'with that id'}; GET / lists them\n`);
      return this.page(res, 404, errorPage({ viewer, title: 'No such build', message }));
    }
    if (action === 'events') return this.buildEvents(req, res, url, summary, viewer);
    if (action === 'log') return this.rawLog(req, res, url, summary, viewer);
    if (action === 'cancel') return this.cancel(req, res, viewer, summary);
    if (url.searchParams.get('part') === 'header') {
      return this.fragment(res, buildHeader(summary, viewer, this.cancellable(summary)).text);
    }
    const full = url.searchParams.get('full') === '1';
    const start = await this.logStart(summary, full);
    return this.page(res, 200, buildPage({ summary, viewer, cancellable: this.cancellable(summary), start, full }));
  }

  // ---- access ----

  /**
   * The viewer of a request that may see the monitor, or undefined once the request was
   * answered: a page sends the reader to sign in; anything else (streams, raw log, badge) gets 401.
   */
  private gate(req: IncomingMessage, res: ServerResponse, url: URL, isPage: boolean): Viewer | undefined {
    const found = this.sessions.fromRequest(req);
    if (found) return { session: found.session, cookie: found.via === 'cookie' };
    if (isPage && (req.method === 'GET' || req.method === 'HEAD') && req.headers.authorization === undefined) {
      res.writeHead(303, { Location: `/signin?next=${encodeURIComponent(url.pathname + url.search)}`, 'Cache-Control': 'no-store' });
      res.end();
      return undefined;
    }
    res.setHeader('WWW-Authenticate', 'Bearer realm="buildbot"');
    this.plain(res, 401, 'sign in at /signin, or send an API token: Authorization: Bearer TOKEN\n');
    return undefined;
  }

  private async signIn(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    if (!this.method(req, res, ['GET', 'HEAD', 'POST'])) return true;
    const configured = this.sessions.configured;
    if (req.method !== 'POST') {
      return this.page(res, 200, signInPage({ next: safeNext(url.searchParams.get('next')), configured }));
    }
    if (!this.sameOrigin(req)) return this.page(res, 403, errorPage({ viewer: { cookie: false }, title: 'Refused', message: 'This form was sent from another site. Open the sign-in page of this server and sign in there.' }));
    // Every sign-in makes a session record and a log line: their number per address is bounded.
    const wait = this.signIns.take(clientAddress(req));
    if (wait) {
      req.resume();
      res.setHeader('Retry-After', String(wait));
      return this.page(res, 429, signInPage({ next: '/', configured, error: `Too many sign-ins from this address (at most ${this.deps.limits?.signInsPerMinute ?? HTTP_LIMIT_DEFAULTS.signInsPerMinute} a minute, --http-signins-per-minute); try again in ${wait} s.` }));
    }
    const form = await readForm(req);
    if (!form) return this.page(res, 400, signInPage({ next: '/', configured, error: 'The form could not be read: send it from the sign-in page.' }));
    const next = safeNext(form.get('next'));
    const token = (form.get('token') ?? '').trim();
    const found = token && /^[\x21-\x7e]{1,1024}$/.test(token) ? this.sessions.checkToken(token) : undefined;
    if (!found) {
      // A pause on a wrong token: guessing costs time (the comparison itself is constant-time).
      await new Promise((resolve) => setTimeout(resolve, 300));
      this.deps.log('monitor-signin-refused', {});
      const error = !configured
        ? 'This server has no API token configured.'
        : token ? 'That token is not valid for this server. Check it for a typo, or ask whoever runs the server for a token from its --api-token (full access) or --api-read-token (read only).'
          : 'Enter a token.';
      return this.page(res, 401, signInPage({ next, configured, error }));
    }
    const { access, id } = found;
    const { cookie } = this.sessions.create(access, id);
    this.deps.log('monitor-signin', { access });
    res.writeHead(303, { Location: next, 'Set-Cookie': sessionCookie(cookie, SESSION_SECONDS, secure(req)), 'Cache-Control': 'no-store' });
    res.end();
    return true;
  }

  private async signOut(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    if (!this.method(req, res, ['POST'])) return true;
    const found = this.sessions.fromRequest(req);
    const form = await readForm(req);
    if (found?.via === 'cookie') {
      if (!this.sameOrigin(req) || !this.sessions.csrfMatches(found.session, form?.get('csrf') ?? undefined)) {
        return this.page(res, 403, errorPage({ viewer: { cookie: false }, title: 'Refused', message: 'This sign-out did not come from a page of this server. Reload the page and use its Sign out button.' }));
      }
      this.sessions.signOut(found.session);
    }
    res.writeHead(303, { Location: '/signin', 'Set-Cookie': sessionCookie('', 0, secure(req)), 'Cache-Control': 'no-store' });
    res.end();
    return true;
  }

  /** A POST from a browser must come from this origin (when the browser says where it came from). */
  private sameOrigin(req: IncomingMessage): boolean {
    const from = req.headers.origin ?? req.headers.referer;
    if (from === undefined) return true;
    const host = req.headers.host;
    if (!host || typeof from !== 'string') return false;
    try {
      return new URL(from).host === host;
    } catch {
      return false;
    }
  }

  // ---- the list ----

  private list(req: IncomingMessage, res: ServerResponse, url: URL, viewer: Viewer): boolean {
    const serviceId = url.searchParams.get('service_id') || undefined;
    const status = url.searchParams.get('status') || undefined;
    if (serviceId !== undefined && !isServiceId(serviceId)) {
      return this.page(res, 400, errorPage({ viewer, title: 'Not a service id', message: html`The filter's service id is not valid: use 1 to 128 letters, digits, ".", "_" or "-". <a href="/">Show every build</a>.` }));
    }
    if (status !== undefined && !STATUSES.includes(status as BuildStatus)) {
      return this.page(res, 400, errorPage({ viewer, title: 'Not a status', message: html`The filter's status must be one of ${STATUSES.join(', ')}. <a href="/">Show every build</a>.` }));
    }
    const rows = this.deps.history.list({ serviceId, status, limit: LIST_LIMIT }).map((summary) => ({ summary, extra: this.rowExtra(summary) }));
    const all = this.deps.history.list({ limit: 100_000 });
    const services = [...new Set(all.map((s) => s.service_id))].sort();
    const host = typeof req.headers.host === 'string' && /^[\w.:[\]-]{1,255}$/.test(req.headers.host) ? req.headers.host : 'buildhost:8080';
    return this.page(res, 200, listPage({
      viewer, rows, services, filter: { service_id: serviceId, status }, origin: `${secure(req) ? 'https' : 'http'}://${host}`,
      sshPort: this.deps.sshPort, limit: LIST_LIMIT, empty: all.length === 0, engines: engineList(this.deps),
    }));
  }

  private rowExtra(summary: BuildSummary): RowExtra {
    if (summary.status !== 'queued') return {};
    const build = this.deps.service.get(summary.id);
    let queued: QueuedRecord | undefined;
    if (build) for (const record of build.log.replay(0)) if (record.type === 'queued') queued = record;
    return queued ? { queued: { place: queued.place, waiting_for: queued.waiting_for } } : {};
  }

  /** The list's live stream: one `build` event per state change (queued, step, end), with the row as the server renders it. */
  private listEvents(req: IncomingMessage, res: ServerResponse, viewer: Viewer): boolean {
    const pacer = this.openStream(req, res, viewer, 'text/event-stream');
    if (!pacer) return true;
    pacer.write('retry: 3000\n\n');
    this.listeners.set(res, pacer);
    this.watchEngines();
    res.once('close', () => this.listeners.delete(res));
    return true;
  }

  /**
   * The engines' state for the open list pages: an `engines` event whenever it changed, looked at
   * after each build change and every ENGINE_POLL_MS (an engine goes down or up without any build
   * moving). The event carries the views only; each page updates its own strip (its buttons are
   * its session's).
   */
  private watchEngines(): void {
    if (!this.deps.engines || this.engineTimer) return;
    this.engineTimer = setInterval(() => {
      if (!this.listeners.size) {
        clearInterval(this.engineTimer);
        this.engineTimer = undefined;
        return;
      }
      this.pushEngines();
    }, ENGINE_POLL_MS);
    this.engineTimer.unref();
  }

  private pushEngines(): void {
    if (!this.deps.engines || !this.listeners.size) return;
    const json = JSON.stringify(engineList(this.deps).map(({ name, state, draining, slots, running }) => ({ name, state, draining, slots, running })));
    if (json === this.enginesSent) return;
    this.enginesSent = json;
    const event = `event: engines\ndata: ${json}\n\n`;
    for (const [res, pacer] of this.listeners) {
      pacer.write(event);
      if (!pacer.hasRoom) res.destroy();
    }
  }

  /**
   * Counts a stream for the viewer's token and address (429 with Retry-After past the limits),
   * sends the head and gives the pacer that writes it (heartbeats included, for event streams).
   */
  private openStream(req: IncomingMessage, res: ServerResponse, viewer: Viewer, type: string, headers: Record<string, string> = {}): Pacer | undefined {
    const refused = admitStream(req, res, this.deps, viewer.session?.tokenId ?? '');
    if (refused) {
      this.plain(res, 429, `${refused}\n`);
      return undefined;
    }
    const sse = type === 'text/event-stream';
    res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no', ...SECURITY_HEADERS, ...headers });
    res.flushHeaders();
    return pacerFor(res, this.deps, sse ? ': heartbeat\n\n' : undefined);
  }

  private changed(build: Build): void {
    if (!this.listeners.size) return;
    this.pending.set(build.id, build);
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Records of one moment (a step's end and the next one's start) make one update.
    setImmediate(() => {
      this.flushScheduled = false;
      const builds = [...this.pending.values()];
      this.pending.clear();
      for (const b of builds) {
        const summary = b.summary;
        const event = `event: build\ndata: ${JSON.stringify({
          id: summary.id, status: summary.status, service_id: summary.service_id, created_at: summary.created_at,
          group: groupOf(summary.status), html: buildRow(summary, this.rowExtra(summary)).text,
        })}\n\n`;
        // A page that does not keep up is dropped (it reconnects and reloads the list).
        for (const [res, pacer] of this.listeners) {
          pacer.write(event);
          if (!pacer.hasRoom) res.destroy();
        }
      }
      this.pushEngines();
    });
  }

  // ---- one build ----

  private cancellable(summary: BuildSummary): boolean {
    const build = this.deps.service.get(summary.id);
    return Boolean(build && build.summary.exit_code === null);
  }

  /**
   * Where the page starts its log: at the start, or, for a log larger than TAIL_BYTES, at a
   * record boundary that leaves about TAIL_BYTES and splits no line, with the line numbers and
   * sections of what came before (so #L links are those of the whole log). Two passes over the
   * records, keeping none: a page of a large log costs a read of it, not its size in memory, and
   * pages of one build asked for at once share one computation.
   */
  private logStart(summary: BuildSummary, full: boolean): Promise<LogStart> {
    const whole: LogStart = { after: 0, firstLine: 1, sections: [], skippedBytes: 0 };
    if (full || summary.output_bytes.stdout + summary.output_bytes.stderr <= TAIL_BYTES) return Promise.resolve(whole);
    const cached = this.startCache.get(summary.id);
    if (cached) return Promise.resolve(cached);
    let pending = this.startPending.get(summary.id);
    if (!pending) {
      pending = this.computeStart(summary, whole).finally(() => this.startPending.delete(summary.id));
      this.startPending.set(summary.id, pending);
    }
    return pending;
  }

  private async computeStart(summary: BuildSummary, whole: LogStart): Promise<LogStart> {
    const live = this.deps.service.get(summary.id);
    const records = (): Iterable<BuildRecord> | AsyncIterable<BuildRecord> => (live ? live.log.replay(0) : this.deps.history.replay(summary.id, 0));
    let total = 0;
    for await (const record of paced(records())) total += outputBytes(record);
    // The tail is the records after the first point where what came before reaches total - TAIL_BYTES.
    const shape = new LogShape();
    let before = 0;
    let boundarySeq = 0;
    let moved = 0;
    let found = false;
    for await (const record of paced(records())) {
      if (!found && before >= total - TAIL_BYTES) {
        if (boundarySeq === 0) return whole;
        found = true;
      }
      // Past the boundary, move the start past an unfinished line (bounded), so no line is split between two numbers.
      if (found && (!shape.midLine || ++moved > 10_000)) break;
      shape.push(record);
      before += outputBytes(record);
      boundarySeq = record.seq;
    }
    // Not found: the last record alone is larger than the tail, and the page starts after it, as the log's end.
    if (boundarySeq === 0) return whole;
    const start: LogStart = { after: boundarySeq, firstLine: shape.lines + 1, sections: shape.sections, skippedBytes: before };
    if (isFinal(summary.status) && !live) {
      if (this.startCache.size >= 32) this.startCache.delete(this.startCache.keys().next().value!);
      this.startCache.set(summary.id, start);
    }
    return start;
  }

  /** The build's records as SSE (`id:` = seq): from the start or after Last-Event-ID / ?after=, live until the exit record. */
  private async buildEvents(req: IncomingMessage, res: ServerResponse, url: URL, summary: BuildSummary, viewer: Viewer): Promise<boolean> {
    const afterText = req.headers['last-event-id'] ?? url.searchParams.get('after') ?? '0';
    if (typeof afterText !== 'string' || !/^\d{1,15}$/.test(afterText)) return this.plain(res, 400, 'after (or Last-Event-ID) must be a record seq, a whole number\n');
    const after = Number(afterText);
    const pacer = this.openStream(req, res, viewer, 'text/event-stream');
    if (!pacer) return true;
    pacer.write('retry: 3000\n\n');
    const build = this.deps.service.get(summary.id);
    if (build) await followLive(res, build, after, SSE_FORMAT, { pacer });
    else await replayStored(pacer, summary, after, this.deps.history, SSE_FORMAT, true, SSE_LINES);
    return true;
  }

  /** The log as plain text, both streams as produced; ?download=1 saves it as a file. */
  private async rawLog(req: IncomingMessage, res: ServerResponse, url: URL, summary: BuildSummary, viewer: Viewer): Promise<boolean> {
    const headers: Record<string, string> = {};
    if (url.searchParams.get('download') === '1') headers['Content-Disposition'] = `attachment; filename="buildbot-${summary.service_id}-${summary.id}.log"`;
    const pacer = this.openStream(req, res, viewer, 'text/plain; charset=utf-8', headers);
    if (!pacer) return true;
    const format = (r: BuildRecord) => {
      if (r.type === 'output') return r.data;
      if (r.type === 'cut') return `\n[buildbot: ${r.bytes} bytes of output (${r.records} records) were cut here; the log keeps its head and tail]\n`;
      return '';
    };
    const build = this.deps.service.get(summary.id);
    if (build) await followLive(res, build, 0, format, { pacer, until: build.lastSeq });
    else await replayStored(pacer, summary, 0, this.deps.history, format, false);
    return true;
  }

  private async cancel(req: IncomingMessage, res: ServerResponse, viewer: Viewer, summary: BuildSummary): Promise<boolean> {
    const form = await readForm(req);
    if (viewer.session?.access !== 'full') {
      return this.page(res, 403, errorPage({ viewer, title: 'Read-only session', message: 'Cancelling a build needs a full-access token (--api-token). Sign out and sign in with one.' }));
    }
    if (viewer.cookie && (!this.sameOrigin(req) || !this.sessions.csrfMatches(viewer.session, form?.get('csrf') ?? undefined))) {
      return this.page(res, 403, errorPage({ viewer, title: 'Refused', message: html`This cancel did not come from a page of this server. <a href="/builds/${summary.id}">Open the build</a> and use its Cancel button.` }));
    }
    const build = this.deps.service.get(summary.id);
    if (!build || !this.deps.service.cancel(summary.id, 'cancelled from the web monitor')) {
      const why = build || isFinal(summary.status) ? `it has ended already (${summary.status})` : `it runs in another process (source ${summary.source}); stop that process to cancel it`;
      return this.page(res, 409, errorPage({ viewer, title: 'Not cancelled', message: html`Build ${summary.id} was not cancelled: ${why}. <a href="/builds/${summary.id}">Back to the build</a>.` }));
    }
    this.deps.log('monitor-cancel', { build: summary.id });
    res.writeHead(303, { Location: `/builds/${summary.id}`, 'Cache-Control': 'no-store' });
    res.end();
    return true;
  }

  /** The projects page, and its Build form (full-access sessions; the form carries the session's CSRF token). */
  private async projects(req: IncomingMessage, res: ServerResponse, url: URL): Promise<boolean> {
    const start = /^\/projects\/([^/]{1,200})\/build$/.exec(url.pathname);
    if (url.pathname !== '/projects' && !start) return false;
    const viewer = this.gate(req, res, url, !start);
    if (!viewer || !this.method(req, res, start ? ['POST'] : ['GET', 'HEAD'])) return true;
    const cards = () => this.deps.projects?.all().map((p) => projectView(p, this.deps));
    if (!start) return this.page(res, 200, projectsPage({ viewer, projects: cards() }));
    const form = await readForm(req);
    const name = decodeURIComponentSafe(start[1]);
    if (viewer.session?.access !== 'full') {
      return this.page(res, 403, errorPage({ viewer, title: 'Read-only session', message: 'Starting a build needs a full-access token (--api-token). Sign out and sign in with one.' }));
    }
    if (viewer.cookie && (!this.sameOrigin(req) || !this.sessions.csrfMatches(viewer.session, form?.get('csrf') ?? undefined))) {
      return this.page(res, 403, errorPage({ viewer, title: 'Refused', message: html`This build request did not come from a page of this server. <a href="/projects">Open the projects</a> and use a Build button.` }));
    }
    const ref = (form?.get('ref') ?? '').trim();
    try {
      if (!this.deps.projects) throw errors.usage('this server has no projects file');
      const build = await this.deps.projects.onDemand(name, ref, undefined, 'monitor');
      this.deps.log('project-build', { build: build.id, project: name, ref, via: 'monitor' });
      res.writeHead(303, { Location: `/builds/${build.id}`, 'Cache-Control': 'no-store' });
      res.end();
      return true;
    } catch (err) {
      if (!isBuildError(err)) throw err;
      const message = err.message.replace(/--revision/g, 'the ref').replace(/; give the tags to push with it$/, '; map it in the projects file, or build it with tags over the API');
      return this.page(res, 400, projectsPage({ viewer, projects: cards(), error: { project: name, message }, ref }));
    }
  }

  /** Drain or Resume from the front page's engine strip: full-access sessions, the session's CSRF token; back to the list. */
  private async drain(req: IncomingMessage, res: ServerResponse, url: URL, name: string, draining: boolean): Promise<boolean> {
    const viewer = this.gate(req, res, url, false);
    if (!viewer || !this.method(req, res, ['POST'])) return true;
    const form = await readForm(req);
    const what = draining ? 'Draining' : 'Resuming';
    if (viewer.session?.access !== 'full') {
      return this.page(res, 403, errorPage({ viewer, title: 'Read-only session', message: `${what} an engine needs a full-access token (--api-token). Sign out and sign in with one.` }));
    }
    if (viewer.cookie && (!this.sameOrigin(req) || !this.sessions.csrfMatches(viewer.session, form?.get('csrf') ?? undefined))) {
      return this.page(res, 403, errorPage({ viewer, title: 'Refused', message: html`This request did not come from a page of this server. <a href="/">Open the builds</a> and use the engine's ${draining ? 'Drain' : 'Resume'} button.` }));
    }
    try {
      await setDraining(this.deps, name, draining, 'monitor');
    } catch (err) {
      if (!(err instanceof HttpError)) throw err;
      return this.page(res, err.status, errorPage({ viewer, title: 'No such engine', message: html`This server has no engine ${/^[a-z0-9-]{1,32}$/.test(name) ? name : 'by that name'}. <a href="/">See the engines it has</a>.` }));
    }
    this.pushEngines();
    res.writeHead(303, { Location: '/', 'Cache-Control': 'no-store' });
    res.end();
    return true;
  }

  private badge(res: ServerResponse, serviceId: string): boolean {
    if (!isServiceId(serviceId)) return this.plain(res, 404, 'not a service id: use 1 to 128 letters, digits, ".", "_" or "-"\n');
    const builds = this.deps.history.list({ serviceId, limit: 100_000 });
    // The newest finished build decides; a service with none yet shows what it is doing.
    const last = builds.filter((b) => isFinal(b.status)).sort((a, b) => (a.created_at < b.created_at ? 1 : -1))[0] ?? builds[0];
    const svg = badgeSvg(serviceId, badgeWord(last?.status));
    res.writeHead(200, { 'Content-Type': 'image/svg+xml; charset=utf-8', 'Cache-Control': 'no-cache, max-age=0', ...SECURITY_HEADERS, 'Content-Security-Policy': "default-src 'none'; style-src 'unsafe-inline'" });
    res.end(svg);
    return true;
  }

  // ---- answers ----

  private method(req: IncomingMessage, res: ServerResponse, methods: string[]): boolean {
    if (methods.includes(req.method ?? '')) return true;
    res.setHeader('Allow', methods.join(', '));
    this.plain(res, 405, `use ${methods.join(' or ')} here\n`);
    return false;
  }

  private page(res: ServerResponse, status: number, body: string): boolean {
    res.writeHead(status, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'Cache-Control': 'no-store', ...SECURITY_HEADERS });
    res.end(res.req?.method === 'HEAD' ? undefined : body);
    return true;
  }

  private fragment(res: ServerResponse, body: string): boolean {
    return this.page(res, 200, body);
  }

  private plain(res: ServerResponse, status: number, text: string): boolean {
    res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', ...SECURITY_HEADERS });
    res.end(text);
    return true;
  }
}

/**
 * No inline script anywhere (scripts are files of this server), styles from our file plus the
 * inline colours ansi_up writes on log spans; no framing; forms post only here.
 */
export const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
  'X-Content-Type-Options': 'nosniff',
  'X-Frame-Options': 'DENY',
  'Referrer-Policy': 'same-origin',
};

const monitors = new WeakMap<HttpDeps, Monitor>();

/** The one Monitor of an HTTP server (by its deps), made on first use. */
export function monitorFor(deps: HttpDeps): Monitor {
  let monitor = monitors.get(deps);
  if (!monitor) {
    monitor = new Monitor(deps);
    monitors.set(deps, monitor);
  }
  return monitor;
}

/**
 * The records, handing the event loop back every few thousand: a live build's log is a synchronous
 * generator, and 140,000 records read in one go held every other request for 355 ms.
 */
export async function* paced<T>(records: Iterable<T> | AsyncIterable<T>): AsyncGenerator<T> {
  let n = 0;
  for await (const record of records) {
    yield record;
    if (++n % 2048 === 0) await new Promise<void>((resolve) => setImmediate(resolve));
  }
}

function outputBytes(record: BuildRecord): number {
  if (record.type !== 'output') return 0;
  const { bytes } = record as { bytes?: Buffer };
  return bytes ? bytes.length : Buffer.byteLength((record as { data: string }).data);
}

/** Reads a small urlencoded form; undefined when it is not one or is too large. */
async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/x-www-form-urlencoded') {
    req.resume();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_FORM_BYTES) {
      req.resume();
      return undefined;
    }
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

/** Where to go after signing in: a path of this server only (never //host or another site). */
function safeNext(next: string | null | undefined): string {
  // Printable ASCII only: a Location header takes nothing else (node throws on U+0100, U+2028), and our paths need nothing else.
  if (!next || next.length > 2000 || !/^\/[\x21-\x7e]*$/.test(next) || next.startsWith('//') || next.includes('\\')) return '/';
  return next;
}

/** Behind a TLS proxy that says so, the cookie is marked Secure. */
const secure = (req: IncomingMessage) => req.headers['x-forwarded-proto'] === 'https';

function decodeURIComponentSafe(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
}

