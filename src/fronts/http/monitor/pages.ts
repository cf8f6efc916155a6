import type { EngineView } from '../../../engines/types.js';
import type { BuildStatus, BuildSummary } from '../../../model/build.js';
import { formatAgo, formatBytes, formatDuration, html, type Html } from './html.js';
import { slug } from './log-model.js';
import type { Session } from './session.js';

/** What a page knows of the person looking at it. */
export interface Viewer {
  session?: Session;
  /** Whether the session came from a cookie (so forms need its CSRF token and sign-out makes sense). */
  cookie: boolean;
}

const STATUS: Record<BuildStatus, { word: string; icon: string }> = {
  queued: { word: 'Queued', icon: '◷' },
  running: { word: 'Running', icon: '●' },
  succeeded: { word: 'Succeeded', icon: '✓' },
  failed: { word: 'Failed', icon: '✕' },
  cancelled: { word: 'Cancelled', icon: '⊘' },
  abandoned: { word: 'Abandoned', icon: '!' },
};
export const STATUSES = Object.keys(STATUS) as BuildStatus[];

/** Status as colour and word, never colour alone (the icon is decoration for sighted readers). */
export function statusPill(status: BuildStatus): Html {
  const s = STATUS[status] ?? { word: status, icon: '?' };
  return html`<span class="status st-${status}"><span class="icon" aria-hidden="true">${s.icon}</span>${s.word}</span>`;
}

export function layout(opts: { title: string; viewer: Viewer; body: Html; script?: string; bodyClass?: string; live?: boolean }): string {
  const { viewer } = opts;
  const access = viewer.session?.access;
  return `<!doctype html>${html`<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="same-origin">
<title>${opts.title} · buildbot</title>
<link rel="stylesheet" href="/assets/monitor.css">
<link rel="icon" href="/assets/favicon.svg" type="image/svg+xml">
${opts.script ? html`<script type="module" src="/assets/${opts.script}"></script>` : ''}
</head>
<body class="${opts.bodyClass ?? ''}">
<a class="skip" href="#main">Skip to content</a>
<header class="topbar">
  <a class="brand" href="/"><span class="logo" aria-hidden="true">▶</span>buildbot</a>
  <nav class="topnav" aria-label="Main"><a href="/">Builds</a> <a href="/projects">Projects</a></nav>
  <div class="who">
    ${access ? html`<span class="access access-${access}" title="${access === 'full' ? 'This session can cancel builds' : 'This session can only look'}">${access === 'full' ? 'full access' : 'read only'}</span>` : ''}
    ${viewer.cookie && viewer.session ? html`<form method="post" action="/signout" class="inline"><input type="hidden" name="csrf" value="${viewer.session.csrf}"><button class="link-button" type="submit">Sign out</button></form>` : ''}
  </div>
</header>
<main id="main" tabindex="-1">
${opts.body}
</main>
<footer class="foot">buildbot · the same data for scripts: <code>/api/v1/builds</code> with <code>Authorization: Bearer TOKEN</code></footer>
</body>
</html>`.text}`;
}

/** The short form of a revision: a commit's first 10 hex digits, a branch or tag as it is. */
export function shortRevision(summary: BuildSummary): { label: string; commit?: string } {
  const commit = summary.commit ? summary.commit.slice(0, 10) : undefined;
  const rev = /^[0-9a-f]{40,64}$/i.test(summary.revision) ? summary.revision.slice(0, 10) : summary.revision;
  return { label: rev.length > 40 ? `${rev.slice(0, 40)}…` : rev, commit: commit && commit !== rev ? commit : undefined };
}

/** The engine a build was placed on (issue 19): none while it waits, nor for builds of before. */
export const engineOf = (summary: BuildSummary): string | undefined => summary.engine;

export type Group = 'running' | 'queued' | 'recent';
export const groupOf = (status: BuildStatus): Group => (status === 'running' ? 'running' : status === 'queued' ? 'queued' : 'recent');

export interface RowExtra {
  /** For a queued build: its place in line and what it waits for. */
  queued?: { place: number; waiting_for: string };
}

const ordinal = (n: number) => `${n}${n % 100 >= 11 && n % 100 <= 13 ? 'th' : ['th', 'st', 'nd', 'rd'][n % 10] ?? 'th'}`;

/** One build in the list. Rendered by the server for the page and for the live stream alike. */
export function buildRow(summary: BuildSummary, extra: RowExtra = {}): Html {
  const rev = shortRevision(summary);
  const link = `/builds/${summary.id}`;
  const running = summary.status === 'running';
  const step = running ? summary.steps.at(-1) : undefined;
  let detail: Html | string = '';
  if (running) {
    detail = html`<span class="step-now">${step ? (step.duration === undefined ? step.name : `after ${step.name}`) : 'starting'}</span>`;
  } else if (summary.status === 'queued') {
    const q = extra.queued;
    detail = q ? (q.waiting_for === 'service' ? `waits for another build of ${summary.service_id}` : `${ordinal(q.place)} in line`) : 'in line';
  } else if (summary.error) {
    detail = html`<span class="err-msg">${summary.error.message.length > 140 ? `${summary.error.message.slice(0, 140)}…` : summary.error.message}</span>`;
  }
  const since = summary.started_at ?? summary.created_at;
  return html`<tr id="b-${summary.id}" class="build st-${summary.status}" data-id="${summary.id}" data-status="${summary.status}" data-service="${summary.service_id}" data-created="${summary.created_at}" data-group="${groupOf(summary.status)}">
<td class="c-status">${statusPill(summary.status)}${summary.exit_code !== null && summary.exit_code !== 0 ? html`<span class="exit">exit ${summary.exit_code}</span>` : ''}</td>
<td class="c-build"><a class="svc" href="${link}">${summary.service_id}</a><div class="sub">${detail}</div></td>
<td class="c-rev"><span class="k">revision</span><code>${rev.label}</code>${rev.commit ? html` <code class="sha" title="${summary.commit}">${rev.commit}</code>` : ''}</td>
<td class="c-image"><span class="k">image</span><span class="image">${summary.image}</span><span class="tags">${summary.tags.map((t) => html`<span class="tag">${t}</span>`)}</span></td>
<td class="c-source"><span class="k">source</span><span class="source src-${summary.source}">${summary.source}</span>${engineOf(summary) ? html` <span class="on-engine" title="the Docker engine it built on">on <span class="engine-name">${engineOf(summary)}</span></span>` : ''}</td>
<td class="c-dur"><span class="k">duration</span>${running || summary.status === 'queued'
    ? html`<span class="ticking" data-elapsed-since="${since}">${formatDuration((Date.now() - Date.parse(since)) / 1000)}</span>`
    : formatDuration(summary.duration)}</td>
<td class="c-when"><time datetime="${summary.created_at}" title="${summary.created_at}" data-ago>${formatAgo(summary.created_at)}</time></td>
</tr>`;
}

const GROUP_TITLES: Record<Group, string> = { running: 'Running', queued: 'Queued', recent: 'Recent' };

export function listPage(opts: {
  viewer: Viewer; rows: Array<{ summary: BuildSummary; extra: RowExtra }>; services: string[];
  filter: { service_id?: string; status?: string }; origin: string; sshPort?: number; limit: number; empty: boolean;
  engines?: EngineView[];
}): string {
  const groups: Record<Group, Html[]> = { running: [], queued: [], recent: [] };
  for (const { summary, extra } of opts.rows) groups[groupOf(summary.status)].push(buildRow(summary, extra));
  const filtered = Boolean(opts.filter.service_id || opts.filter.status);
  const body = html`
<div class="page-head">
  <h1>Builds</h1>
  <span class="live-state" id="live-state" role="status" aria-live="polite"></span>
</div>
${opts.engines?.length ? enginesStrip(opts.engines, opts.viewer) : ''}
<form class="filters" method="get" action="/" id="filters" role="search" aria-label="Filter builds">
  <label>Service
    <select name="service_id">
      <option value="">all services</option>
      ${opts.services.map((s) => html`<option value="${s}"${s === opts.filter.service_id ? html` selected` : ''}>${s}</option>`)}
      ${opts.filter.service_id && !opts.services.includes(opts.filter.service_id) ? html`<option value="${opts.filter.service_id}" selected>${opts.filter.service_id}</option>` : ''}
    </select>
  </label>
  <label>Status
    <select name="status">
      <option value="">any status</option>
      ${STATUSES.map((s) => html`<option value="${s}"${s === opts.filter.status ? html` selected` : ''}>${STATUS[s].word.toLowerCase()}</option>`)}
    </select>
  </label>
  <button type="submit" class="button">Filter</button>
  ${filtered ? html`<a class="clear" href="/">Clear filter</a>` : ''}
</form>
${opts.empty ? emptyState(opts.origin, opts.sshPort) : ''}
<div id="groups" data-filter-service="${opts.filter.service_id ?? ''}" data-filter-status="${opts.filter.status ?? ''}"${opts.empty ? html` hidden` : ''}>
${(['running', 'queued', 'recent'] as Group[]).map((g) => html`
<section class="group" id="group-${g}" aria-labelledby="h-${g}"${groups[g].length || g === 'recent' ? '' : html` hidden`}>
  <h2 id="h-${g}">${GROUP_TITLES[g]} <span class="count">${groups[g].length}</span></h2>
  <table class="builds">
    <thead><tr><th>Status</th><th>Build</th><th>Revision</th><th>Image and tags</th><th>Source, engine</th><th>Duration</th><th>When</th></tr></thead>
    <tbody>${groups[g]}</tbody>
  </table>
  ${g === 'recent' ? html`<p class="none"${groups.recent.length ? html` hidden` : ''}>${filtered ? 'No finished build matches this filter.' : 'No finished builds yet.'}</p>` : ''}
</section>`)}
${opts.rows.length >= opts.limit ? html`<p class="more">Showing the ${opts.limit} newest; filter by service or status to find older ones, or ask the API: <code>GET /api/v1/builds?limit=1000</code>.</p>` : ''}
</div>`;
  return layout({ title: 'Builds', viewer: opts.viewer, body, script: 'browser-list.js', bodyClass: 'list' });
}

/**
 * The engines builds are placed on (issue 19): up or down, draining, running of slots, and for a
 * full-access session a Drain and a Resume form (the one that applies shown; the list's script
 * flips them as the state changes). Forms post with the session's CSRF token, like Build and Cancel.
 */
export function enginesStrip(engines: EngineView[], viewer: Viewer): Html {
  const full = viewer.session?.access === 'full';
  const csrf = viewer.cookie && viewer.session ? html`<input type="hidden" name="csrf" value="${viewer.session.csrf}">` : '';
  const form = (e: EngineView, action: 'drain' | 'resume', shown: boolean) => html`<form method="post" action="/engines/${encodeURIComponent(e.name)}/${action}" class="inline e-${action}"${shown ? '' : html` hidden`}>${csrf}<button class="button small${action === 'drain' ? ' danger' : ''}" type="submit" title="${action === 'drain' ? `No new build goes to ${e.name}; its running builds finish` : `${e.name} takes builds again`}">${action === 'drain' ? 'Drain' : 'Resume'}</button></form>`;
  return html`<section class="engines" id="engines" aria-label="Docker engines">
<h2 class="visually-hidden">Engines</h2>
<ul class="engine-list">${engines.map((e) => html`<li class="engine-card card e-${e.state}${e.draining ? ' e-draining' : ''}" id="engine-${e.name}" data-engine="${e.name}" title="${e.url}">
  <span class="e-dot" aria-hidden="true"></span>
  <span class="engine-name">${e.name}</span>
  <span class="e-state">${engineStateWord(e)}</span>
  <span class="e-load"><span class="e-running">${e.running}</span> of <span class="e-slots">${e.slots}</span> running</span>
  ${full ? html`${form(e, 'drain', !e.draining)}${form(e, 'resume', e.draining)}` : ''}
</li>`)}</ul>
</section>`;
}

/** The engine's state in words: never colour alone. */
export const engineStateWord = (e: Pick<EngineView, 'state' | 'draining'>) => `${e.state === 'up' ? 'up' : 'down'}${e.draining ? ', draining' : ''}`;

/** No build yet: the commands that start one. */
function emptyState(origin: string, sshPort: number | undefined): Html {
  const host = new URL(origin).hostname;
  return html`<section class="empty card" id="empty">
<h2>No builds yet</h2>
<p>Builds appear here as soon as they start, from any front. Start one:</p>
${sshPort === undefined ? '' : html`<h3>Over SSH</h3>
<pre><code>ssh -p ${String(sshPort)} ${host} buildbot.sh --service_id api \\
  --repo git@github.com:org/api.git --repo_auth_key "$(base64 -w0 deploy_key)" \\
  --revision main --image registry.example.com/api --tag latest \\
  --docker_login_cmd "'docker login -u ci -p $REGISTRY_PASSWORD registry.example.com'"</code></pre>
<p class="hint">ssh sends one line that the server splits like a shell: a value with spaces is quoted twice.</p>`}
<h3>Over HTTP</h3>
<pre><code>BUILDBOT_TOKEN=… buildbot.sh --server ${origin} --service_id api \\
  --repo git@github.com:org/api.git --revision main --image registry.example.com/api --tag latest</code></pre>
<pre><code>curl -H "Authorization: Bearer $BUILDBOT_TOKEN" -H 'Content-Type: application/json' \\
  -d '{"service_id":"api","repo":"…","revision":"main","image":"registry.example.com/api","tags":["latest"]}' \\
  ${origin}/api/v1/builds</code></pre>
<p class="hint">The README's "buildbot.sh" and "HTTP API" sections explain every flag.</p>
</section>`;
}

export interface LogStart {
  /** Records after this seq are sent to the page; 0 for the whole log. */
  after: number;
  firstLine: number;
  sections: Array<{ index: number; name: string; state: string; duration?: number }>;
  /** Output bytes left out by starting at the tail. */
  skippedBytes: number;
}

/** The build page's header: status, facts, steps. Also sent alone (?part=header) as the build moves. */
export function buildHeader(summary: BuildSummary, viewer: Viewer, cancellable: boolean): Html {
  const rev = shortRevision(summary);
  // An abandoned build has no exit code either, but nothing runs any more.
  const live = summary.status === 'queued' || summary.status === 'running';
  const since = summary.started_at ?? summary.created_at;
  const fact = (label: string, value: Html | string, cls = '') => html`<div class="fact ${cls}"><dt>${label}</dt><dd>${value}</dd></div>`;
  const canCancel = cancellable && viewer.session?.access === 'full';
  return html`<section id="build-header" class="card build-header st-${summary.status}" data-status="${summary.status}" data-live="${live ? '1' : ''}">
<div class="title-row">
  <h1><a href="/?service_id=${encodeURIComponent(summary.service_id)}" class="svc">${summary.service_id}</a> <span class="build-id">build ${summary.id}</span></h1>
  ${statusPill(summary.status)}
  <div class="actions">
    <a class="button" href="/builds/${summary.id}/log?download=1" download>Download raw log</a>
    ${canCancel ? html`<form method="post" action="/builds/${summary.id}/cancel" class="inline" id="cancel-form">
      ${viewer.cookie ? html`<input type="hidden" name="csrf" value="${viewer.session!.csrf}">` : ''}
      <button class="button danger" type="submit" id="cancel">Cancel build</button></form>` : ''}
  </div>
</div>
${summary.error ? html`<p class="error-line" role="alert"><strong>${summary.error.code}</strong> ${summary.error.message}</p>` : ''}
<dl class="facts">
  ${fact('Exit code', summary.exit_code === null ? '—' : html`<code class="${summary.exit_code === 0 ? 'ok' : 'bad'}">${summary.exit_code}</code>`)}
  ${fact('Revision', html`<code>${rev.label}</code>${summary.commit ? html` <code class="sha" title="${summary.commit}">${summary.commit.slice(0, 12)}</code>` : ''}`)}
  ${fact('Image', html`<span class="image">${summary.image}</span>`)}
  ${fact('Tags', html`<span class="tags">${summary.tags.map((t) => html`<span class="tag">${t}</span>`)}</span>`)}
  ${summary.digest ? fact('Digest', html`<code class="digest">${summary.digest}</code>`, 'wide') : ''}
  ${engineOf(summary) ? fact('Engine', html`<span class="engine-name">${engineOf(summary)}</span>`) : ''}
  ${fact('Source', summary.trigger ? `${summary.source}: ${summary.trigger.project} ${summary.trigger.ref}${summary.trigger.forge ? ` from ${summary.trigger.forge}` : ''}${summary.trigger.pusher ? `, pushed by ${summary.trigger.pusher}` : ''}${summary.trigger.delivery ? ` (delivery ${summary.trigger.delivery})` : ''}` : summary.source)}
  ${summary.commit_statuses?.length ? fact('Commit statuses', html`<ul class="statuses">${summary.commit_statuses.map((s) => html`<li class="${s.ok ? 'ok' : 'bad'}">${s.forge} <code>${s.sent}</code> ${s.ok ? 'posted' : 'not posted'} (${s.attempts} attempt${s.attempts === 1 ? '' : 's'}${s.http ? `, HTTP ${s.http}` : ''})${s.ok || !s.error ? '' : html`: <span class="muted">${s.error}</span>`}</li>`)}</ul>`, 'wide') : ''}
  ${fact('Queued', html`<time datetime="${summary.created_at}" title="${summary.created_at}">${new Date(summary.created_at).toISOString().replace('T', ' ').slice(0, 19)} UTC</time>`)}
  ${fact('Duration', live
    ? html`<span class="ticking" data-elapsed-since="${since}">${formatDuration((Date.now() - Date.parse(since)) / 1000)}</span>${summary.status === 'queued' ? ' waiting' : ''}`
    : html`${formatDuration(summary.duration) || '—'}${summary.finished_at ? html` <span class="muted">ended <time datetime="${summary.finished_at}" data-ago>${formatAgo(summary.finished_at)}</time></span>` : ''}`)}
  ${fact('Output', `${formatBytes(summary.output_bytes.stdout)} stdout, ${formatBytes(summary.output_bytes.stderr)} stderr${summary.log_cut_bytes ? `, ${formatBytes(summary.log_cut_bytes)} cut from the stored log` : ''}`)}
</dl>
${summary.steps.length ? html`<ol class="steps-bar" aria-label="Steps">${summary.steps.map((step) => {
    const state = step.duration === undefined ? (live ? 'running' : 'failed') : step.ok === false ? 'failed' : 'ok';
    return html`<li class="chip step-${state}"><a href="#step-${slug(step.name)}"><span class="icon" aria-hidden="true">${state === 'ok' ? '✓' : state === 'failed' ? '✕' : '●'}</span>${step.name}<span class="d">${step.duration === undefined ? (live ? 'running' : '') : formatDuration(step.duration)}</span><span class="visually-hidden"> ${state}</span></a></li>`;
  })}</ol>` : ''}
</section>`;
}

export function buildPage(opts: { summary: BuildSummary; viewer: Viewer; cancellable: boolean; start: LogStart; full: boolean }): string {
  const { summary, start } = opts;
  const body = html`
<nav class="crumbs" aria-label="Breadcrumb"><a href="/">Builds</a> <span aria-hidden="true">/</span> <a href="/?service_id=${encodeURIComponent(summary.service_id)}">${summary.service_id}</a> <span aria-hidden="true">/</span> <span>${summary.id}</span></nav>
${buildHeader(summary, opts.viewer, opts.cancellable)}
<section class="card log-card" aria-label="Log">
  <div class="log-toolbar">
    <h2>Log</h2>
    <div class="seg" role="group" aria-label="Show streams">
      <button type="button" class="seg-b" data-stream="all" aria-pressed="true">All</button>
      <button type="button" class="seg-b" data-stream="stdout" aria-pressed="false">stdout</button>
      <button type="button" class="seg-b" data-stream="stderr" aria-pressed="false">stderr</button>
    </div>
    <span class="live-state" id="live-state" role="status" aria-live="polite"></span>
    <button type="button" class="button follow" id="follow" aria-pressed="false" title="Keep the newest line in view">Follow</button>
  </div>
  ${start.skippedBytes ? html`<p class="tail-note" id="tail-note">The first ${formatBytes(start.skippedBytes)} of output (lines 1–${start.firstLine - 1}) are not shown, to keep this page fast. <a href="/builds/${summary.id}?full=1">Show the whole log</a> or <a href="/builds/${summary.id}/log?download=1" download>download it</a>.</p>` : ''}
  <noscript><p class="tail-note">The log needs JavaScript to render live; <a href="/builds/${summary.id}/log">read it as plain text</a>.</p></noscript>
  <div id="log" class="log" data-build="${summary.id}" data-after="${start.after}" data-first-line="${start.firstLine}" data-sections="${JSON.stringify(start.sections)}" data-full="${opts.full ? '1' : ''}" aria-busy="true"></div>
</section>`;
  return layout({ title: `${summary.service_id} ${STATUS[summary.status]?.word.toLowerCase() ?? summary.status}`, viewer: opts.viewer, body, script: 'browser-build.js', bodyClass: 'build' });
}

export function signInPage(opts: { next: string; error?: string; configured: boolean; status?: number }): string {
  const body = html`
<section class="card signin">
  <h1>Sign in</h1>
  ${opts.configured
    ? html`<p>Paste an API token of this server: a read token (<code>--api-read-token</code>) shows builds and logs; a full token (<code>--api-token</code>) can also cancel them.</p>`
    : html`<p class="error-line" role="alert">This server has no API token configured, so nobody can sign in. Start it with <code>--api-token TOKEN</code> or <code>--api-read-token TOKEN</code> (or <code>BUILDBOT_API_TOKENS</code> / <code>BUILDBOT_API_READ_TOKENS</code>).</p>`}
  ${opts.error ? html`<p class="error-line" role="alert" id="signin-error">${opts.error}</p>` : ''}
  <form method="post" action="/signin">
    <input type="hidden" name="next" value="${opts.next}">
    <label for="token">Token</label>
    <input id="token" name="token" type="password" autocomplete="current-password" spellcheck="false" autocapitalize="off" required autofocus${opts.configured ? '' : html` disabled`}>
    <button class="button primary" type="submit"${opts.configured ? '' : html` disabled`}>Sign in</button>
  </form>
  <p class="hint">The sign-in lasts 12 hours, or until the server restarts. The token itself is not stored in the browser.</p>
</section>`;
  return layout({ title: 'Sign in', viewer: { cookie: false }, body, bodyClass: 'signin-page' });
}

export function errorPage(opts: { viewer: Viewer; title: string; message: Html | string; }): string {
  const body = html`<section class="card problem"><h1>${opts.title}</h1><p>${opts.message}</p><p><a class="button" href="/">Back to the builds</a></p></section>`;
  return layout({ title: opts.title, viewer: opts.viewer, body });
}
