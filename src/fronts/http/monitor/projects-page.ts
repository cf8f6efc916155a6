import type { BuildSummary } from '../../../model/build.js';
import { html, type Html } from './html.js';
import { errorPage, layout, statusPill, type Viewer } from './pages.js';

/** What the page shows of a project: GET /api/v1/projects's view (no secret, no secret reference). */
export interface ProjectCard {
  name: string;
  repo: string;
  image: string;
  on_branch: Record<string, string[]>;
  on_tag: { pattern: string; tags: string[] } | null;
  webhooks: Record<string, { repository: string; url: string }>;
  public_badge: boolean;
  last_builds: Record<string, Omit<BuildSummary, 'host' | 'pid'>>;
}

/** The projects of the projects file, each with its last build per ref and, for a full-access session, a Build form. */
export function projectsPage(opts: { viewer: Viewer; projects: ProjectCard[] | undefined; error?: { project: string; message: string }; ref?: string }): string {
  const { viewer } = opts;
  if (!opts.projects) {
    return errorPage({ viewer, title: 'No projects', message: 'This server has no projects file. Start it with --projects FILE to build projects by name, from forge webhooks and from this page.' });
  }
  const full = viewer.session?.access === 'full';
  const card = (p: ProjectCard): Html => html`<section class="card project" id="project-${p.name}" aria-labelledby="title-${p.name}">
  <h2 id="title-${p.name}"><a href="/?service_id=${encodeURIComponent(p.name)}">${p.name}</a>${p.public_badge ? html` <img src="/badge/${encodeURIComponent(p.name)}.svg" alt="build status of ${p.name}" class="badge">` : ''}</h2>
  <dl class="facts">
    <div class="fact wide"><dt>Repository</dt><dd><code>${p.repo}</code></dd></div>
    <div class="fact wide"><dt>Image</dt><dd><span class="image">${p.image}</span></dd></div>
    <div class="fact wide"><dt>Branches</dt><dd>${Object.keys(p.on_branch).length ? Object.entries(p.on_branch).map(([glob, tags]) => html`<code>${glob}</code> → ${tags.map((t) => html`<span class="tag">${t}</span> `)}<br>`) : '—'}</dd></div>
    <div class="fact wide"><dt>Tags</dt><dd>${p.on_tag ? html`<code>${p.on_tag.pattern}</code> → ${p.on_tag.tags.map((t) => html`<span class="tag">${t}</span> `)}` : '—'}</dd></div>
    <div class="fact wide"><dt>Webhooks</dt><dd>${Object.keys(p.webhooks).length ? Object.entries(p.webhooks).map(([forge, hook]) => html`${forge} (${hook.repository}): <code>${hook.url}</code><br>`) : '—'}</dd></div>
  </dl>
  ${Object.keys(p.last_builds).length ? html`<table class="last-builds"><thead><tr><th>Ref</th><th>Last build</th><th>Status</th><th>Tags</th></tr></thead><tbody>${Object.entries(p.last_builds).map(([ref, b]) => html`<tr><td><code>${ref}</code></td><td><a href="/builds/${b.id}">${b.id}</a></td><td>${statusPill(b.status)}</td><td>${b.tags.map((t) => html`<span class="tag">${t}</span> `)}</td></tr>`)}</tbody></table>` : html`<p class="muted">No build yet.</p>`}
  ${opts.error?.project === p.name ? html`<p class="error-line" role="alert" id="build-error">${opts.error.message}</p>` : ''}
  ${full ? html`<form method="post" action="/projects/${encodeURIComponent(p.name)}/build" class="build-form">
    ${viewer.cookie ? html`<input type="hidden" name="csrf" value="${viewer.session!.csrf}">` : ''}
    <label for="ref-${p.name}">Ref</label>
    <input id="ref-${p.name}" name="ref" required maxlength="255" placeholder="main, v1.2.3 or a commit" value="${opts.error?.project === p.name ? opts.ref ?? '' : ''}" spellcheck="false" autocapitalize="off">
    <button class="button primary" type="submit">Build</button>
  </form>` : ''}
</section>`;
  const body = html`<nav class="crumbs" aria-label="Breadcrumb"><a href="/">Builds</a> <span aria-hidden="true">/</span> <span>Projects</span></nav>
<h1 class="page-title">Projects</h1>
${opts.projects.length ? opts.projects.map(card) : html`<p class="muted">The projects file lists no project.</p>`}
${full ? '' : html`<p class="muted">Starting builds needs a full-access session (--api-token).</p>`}`;
  return layout({ title: 'Projects', viewer, body, bodyClass: 'projects' });
}
