import type { IncomingMessage, ServerResponse } from 'node:http';
import { isBuildError } from '../../model/errors.js';
import { readEvent, ignoreReason } from '../../forges/events.js';
import { deliveryId, eventName, SIGNATURE_HEADER, verdictFromHeaders, verifySignature } from '../../forges/verify.js';
import { asHttpError, HttpError, readJson } from './body.js';
import { allow, authorize, publicSummary, sendJson, type HttpDeps } from './respond.js';
import { clientAddress, RateLimit, RETRY_AFTER_SECONDS } from './limits.js';
import { validateRepoUrl } from '../../request/validate.js';
import type { Build } from '../../service/build.js';
import type { BuildSummary } from '../../model/build.js';
import { Deliveries } from '../../projects/deliveries.js';
import { FORGES, type Forge } from '../../forges/types.js';
import type { Project } from '../../projects/file.js';
import type { ProjectBuilds } from '../../projects/builds.js';
import { mapRef } from '../../projects/tags.js';

/** Forges send whole pushes: GitHub caps a payload at 25 MB, but a push of sane size is far below this. */
export const MAX_HOOK_BYTES = 10 * 1024 * 1024;

/**
 * The HTTP front of the projects (src/projects/) and the forges' webhooks (src/forges/): it
 * translates requests into the project builds' calls and their answers into HTTP.
 */

/** Serves /hooks/… and /api/v1/projects…; false when the route is neither. */
export async function projectRoutes(req: IncomingMessage, res: ServerResponse, url: URL, deps: HttpDeps): Promise<boolean> {
  const route = url.pathname;
  const hook = /^\/hooks\/([^/]{1,32})\/([^/]{1,300})$/.exec(route);
  if (hook) {
    await webhook(req, res, deps, hook[1], decode(hook[2]));
    return true;
  }
  if (route === '/api/v1/projects') {
    if (!allow(req, res, ['GET']) || !authorize(req, res, deps, 'read')) return true;
    sendJson(res, 200, { projects: (deps.projects?.all() ?? []).map((p) => projectView(p, deps)) });
    return true;
  }
  const builds = /^\/api\/v1\/projects\/([^/]{1,300})\/builds$/.exec(route);
  if (builds) {
    if (!allow(req, res, ['POST']) || !authorize(req, res, deps, 'full')) return true;
    await onDemand(req, res, deps, decode(builds[1]));
    return true;
  }
  return false;
}

const decode = (text: string) => {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
};

const notFound = (name: string) => new HttpError(404, 'ENOPROJECT', `no project ${/^[\w.-]{1,128}$/.test(name) ? `"${name}" ` : ''}in the projects file; GET /api/v1/projects lists them`);

async function onDemand(req: IncomingMessage, res: ServerResponse, deps: HttpDeps, name: string): Promise<void> {
  const projects = deps.projects;
  if (!projects?.get(name)) throw notFound(name);
  const body = await readJson(req);
  const fields = (body && typeof body === 'object' && !Array.isArray(body) ? body : {}) as Record<string, unknown>;
  for (const key of Object.keys(fields)) if (key !== 'ref' && key !== 'tags') throw new HttpError(400, 'EUSAGE', `unknown field${/^\w{1,64}$/.test(key) ? ` "${key}"` : ''}; a project build takes "ref" and, optionally, "tags"`, key.slice(0, 64));
  if (typeof fields.ref !== 'string' || !fields.ref) throw new HttpError(400, 'EUSAGE', 'give the "ref" to build: a branch, a tag or a commit id, e.g. {"ref": "main"}', 'ref');
  if (fields.tags !== undefined && (!Array.isArray(fields.tags) || fields.tags.some((t) => typeof t !== 'string') || fields.tags.length > 100)) {
    throw new HttpError(400, 'EUSAGE', '"tags" must be an array of strings, e.g. ["1.0", "latest"]', 'tags');
  }
  let build: Build;
  try {
    build = await projects.onDemand(name, fields.ref, fields.tags as string[] | undefined, 'http');
  } catch (err) {
    if (!isBuildError(err)) throw err;
    const http = asHttpError(err);
    throw new HttpError(http.status, http.code, http.message.replace(/"revision"/g, '"ref"'), http.field === 'revision' ? 'ref' : http.field);
  }
  deps.log('project-build', { build: build.id, project: name, ref: build.summary.trigger?.ref, via: 'http' });
  answerBuild(res, 202, build.summary, projects);
}

function answerBuild(res: ServerResponse, status: number, summary: BuildSummary, projects: ProjectBuilds, extra: Record<string, unknown> = {}): void {
  res.setHeader('Location', `/api/v1/builds/${summary.id}`);
  sendJson(res, status, { build: publicSummary(summary), url: projects.buildUrl(summary.id), ...extra });
}

/** What GET /api/v1/projects shows of a project: never a secret, nor the file's secret references. */
export function projectView(project: Project, deps: HttpDeps) {
  let repo = '';
  try {
    repo = validateRepoUrl(project.repo, project.vcs).displayUrl;
  } catch {
    repo = '(not a valid URL)';
  }
  const lastByRef = new Map<string, ReturnType<typeof publicSummary>>();
  for (const summary of deps.history.list({ serviceId: project.name, limit: 1000 })) {
    const ref = summary.trigger?.ref ?? summary.revision;
    // The list comes running first, then newest first: the first seen per ref is its last build.
    if (!lastByRef.has(ref)) lastByRef.set(ref, publicSummary(summary));
  }
  return {
    name: project.name,
    repo,
    image: project.image,
    on_branch: Object.fromEntries(project.onBranch.map((e) => [e.glob, e.tags])),
    on_tag: project.onTag ? { pattern: project.onTag.pattern.source, tags: project.onTag.tags } : null,
    webhooks: Object.fromEntries(FORGES.filter((f) => project.webhooks[f]).map((f) => [f, {
      repository: project.webhooks[f]!.repository,
      url: `${deps.projects!.publicUrl}/hooks/${f}/${encodeURIComponent(project.name)}`,
      status: project.webhooks[f]!.status ? { api_url: project.webhooks[f]!.status!.apiUrl, context: project.webhooks[f]!.status!.context } : null,
    }])),
    public_badge: project.publicBadge,
    last_builds: Object.fromEntries(lastByRef),
  };
}

/** Hook bodies read at once from one address, and bytes of them held at once in all (before their signature is checked). */
const HOOK_BODIES_PER_ADDRESS = 8;
const HOOK_BYTES_IN_FLIGHT = 64 * 1024 * 1024;
const hookBodies = new Map<string, number>();
let hookBytes = 0;

/** The body, within the bounds above: 429 past an address's bodies, 503 past the bytes of all (both with Retry-After). */
async function readHookBody(req: IncomingMessage, res: ServerResponse): Promise<Buffer> {
  const address = clientAddress(req);
  const reading = hookBodies.get(address) ?? 0;
  const busy = (status: 429 | 503, message: string) => {
    res.setHeader('Retry-After', String(RETRY_AFTER_SECONDS));
    res.setHeader('Connection', 'close');
    return new HttpError(status, 'EBUSY', message);
  };
  if (reading >= HOOK_BODIES_PER_ADDRESS) throw busy(429, `this address sends ${HOOK_BODIES_PER_ADDRESS} hook deliveries at once already; try again later`);
  hookBodies.set(address, reading + 1);
  let held = 0;
  try {
    return await readRaw(req, (bytes) => {
      held += bytes;
      hookBytes += bytes;
      if (hookBytes > HOOK_BYTES_IN_FLIGHT) throw busy(503, 'the server is reading as many hook deliveries as it allows; try again later');
    });
  } finally {
    hookBytes -= held;
    const n = (hookBodies.get(address) ?? 1) - 1;
    if (n > 0) hookBodies.set(address, n);
    else hookBodies.delete(address);
  }
}

async function readRaw(req: IncomingMessage, onChunk: (bytes: number) => void): Promise<Buffer> {
  const declared = Number(req.headers['content-length']);
  const tooLarge = () => new HttpError(413, 'ETOOLARGE', `the body is larger than ${MAX_HOOK_BYTES / 1024 / 1024} MB`);
  // A sender gets its 413 only once it has stopped sending (an answer while it still writes is
  // a reset to it); past MAX_DISCARD_BYTES the connection is simply cut.
  const discard = async (seen: number) => {
    for await (const chunk of req as AsyncIterable<Buffer>) {
      seen += chunk.length;
      if (seen > MAX_DISCARD_BYTES) break;
    }
    return tooLarge();
  };
  if (declared > MAX_DISCARD_BYTES) throw tooLarge();
  if (declared > MAX_HOOK_BYTES) throw await discard(0);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_HOOK_BYTES) throw await discard(size);
    onChunk(chunk.length);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

const MAX_DISCARD_BYTES = 4 * MAX_HOOK_BYTES;

/** Bad signatures logged per address: 5 a minute, then one line a minute saying how many were not. */
const refusalLogs = new RateLimit(5, 60_000);
const unlogged = new Map<string, number>();

function logRefusal(req: IncomingMessage, deps: HttpDeps, logged: Record<string, unknown>): void {
  const address = clientAddress(req);
  if (refusalLogs.take(address)) {
    if (unlogged.size < 10_000 || unlogged.has(address)) unlogged.set(address, (unlogged.get(address) ?? 0) + 1);
    return;
  }
  const more = unlogged.get(address);
  unlogged.delete(address);
  deps.log('webhook-refused', { ...logged, address, ...(more ? { 'refusals-not-logged': more } : {}) });
}

/** Deliveries whose build is being made right now, by delivery key. */
const handling = new Map<string, Promise<Build | undefined>>();

/**
 * POST /hooks/{forge}/{project}: the signature is the authentication (no token). Answers at
 * once: the build is queued, not awaited (Gitea waits 5 s). An event that starts nothing is a
 * 200, never a 4xx: GitLab disables a hook after repeated 4xx answers.
 */
async function webhook(req: IncomingMessage, res: ServerResponse, deps: HttpDeps, forgeName: string, name: string): Promise<void> {
  if (!allow(req, res, ['POST'])) return;
  const forge = forgeName as Forge;
  const project = deps.projects?.get(name);
  if (!(FORGES as readonly string[]).includes(forgeName)) throw new HttpError(404, 'ENOTFOUND', `no forge ${/^\w{1,32}$/.test(forgeName) ? `"${forgeName}"` : 'by that name'}; the hooks are /hooks/{${FORGES.join('|')}}/PROJECT`);
  if (!project) throw notFound(name);
  const hook = project.webhooks[forge];
  if (!hook) throw new HttpError(404, 'ENOTFOUND', `project ${name} takes no ${forge} webhooks; add webhooks.${forge} to it in the projects file`);
  const delivery = deliveryId(forge, req.headers);
  const event = eventName(forge, req.headers);
  const logged = { forge, project: name, delivery, event: /^[\w :.-]{0,64}$/.test(event) ? event : '?' };
  // A declared length over the limit is a 413 first, whatever the signature (readRaw throws it).
  if (Number(req.headers['content-length']) > MAX_HOOK_BYTES) await readRaw(req, () => {});
  // Refused before the body is read where the headers decide (node discards the rest of it).
  const early = verdictFromHeaders(forge, req.headers, hook.secret);
  const raw = early === 'missing' || early === 'wrong' ? Buffer.alloc(0) : await readHookBody(req, res);
  const verdict = early && early !== 'ok' ? early : verifySignature(forge, req.headers, raw, hook.secret);
  if (verdict !== 'ok') {
    logRefusal(req, deps, { ...logged, reason: `${verdict} signature` });
    res.setHeader('WWW-Authenticate', `Signature header="${SIGNATURE_HEADER[forge].split(' ')[0]}"`);
    throw new HttpError(401, 'ESIGNATURE', verdict === 'missing'
      ? `no signature: the forge sends one in ${SIGNATURE_HEADER[forge]} once the hook has the project's secret; set it on the hook`
      : `the signature does not match the body; the hook's secret must be the one the projects file gives for webhooks.${forge}`);
  }
  const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase();
  if (type !== 'application/json') throw new HttpError(415, 'EMEDIATYPE', 'set the hook\'s content type to application/json');
  let body: unknown;
  try {
    body = JSON.parse(raw.toString('utf8'));
  } catch {
    throw new HttpError(400, 'EBADJSON', 'the body is not valid JSON');
  }
  const read = readEvent(forge, event, body);
  if (read.kind === 'ping') {
    deps.log('webhook', { ...logged, outcome: 'ping' });
    return sendJson(res, 200, { ok: true, message: `project ${name} takes ${forge} push events here` });
  }
  if (read.kind === 'ignored') return ignored(res, deps, logged, read.why);
  if (read.repository.toLowerCase() !== hook.repository.toLowerCase()) {
    deps.log('webhook-refused', { ...logged, reason: 'another repository' });
    throw new HttpError(403, 'EWRONGREPO', `the event is about another repository than the one project ${name} builds (webhooks.${forge}.${forge === 'gitlab' ? 'project' : 'repository'} is ${hook.repository})`);
  }
  if (deps.service.isStopping) throw new HttpError(503, 'ESHUTTINGDOWN', 'the server is shutting down; the forge may deliver again later');
  const projects = deps.projects!;
  const started: Build[] = [];
  const reasons: string[] = [];
  for (const [index, push] of read.pushes.entries()) {
    const why = ignoreReason(push);
    const mapping = why ? undefined : mapRef(project, push.kind, push.name);
    if (why || !mapping) {
      reasons.push(why ?? `project ${name} maps no tags for ${push.kind} ${push.name.length > 100 ? `${push.name.slice(0, 100)}…` : push.name} (no ${push.kind === 'branch' ? 'on_branch entry' : 'on_tag pattern'} matches it)`);
      continue;
    }
    const key = delivery === undefined ? undefined : Deliveries.key(forge, name, index ? `${delivery}#${index}` : delivery);
    // The same delivery twice at once (a forge retrying while the first is being handled) is one build.
    const racing = key === undefined ? undefined : handling.get(key);
    const raced = racing && (await racing);
    if (raced) {
      deps.log('webhook', { ...logged, outcome: 'redelivery', build: raced.id });
      return answerBuild(res, 200, raced.summary, projects, { redelivery: true });
    }
    const earlier = key === undefined ? undefined : projects.deliveries.get(key);
    const earlierSummary = earlier === undefined ? undefined : deps.history.get(earlier);
    // A redelivery of a build that failed is the forge's way to say "retry": it builds again.
    if (earlierSummary && ['queued', 'running', 'succeeded'].includes(earlierSummary.status)) {
      deps.log('webhook', { ...logged, outcome: 'redelivery', build: earlierSummary.id });
      return answerBuild(res, 200, earlierSummary, projects, { redelivery: true });
    }
    let build: Build;
    const attempt = projects.start(project, {
      revision: push.revision, commit: push.commit, mapping, source: 'webhook', forge,
      trigger: { project: name, ref: push.name, forge, ...(delivery ? { delivery } : {}), ...(push.pusher ? { pusher: push.pusher } : {}) },
    });
    if (key !== undefined) handling.set(key, attempt.catch(() => undefined));
    try {
      build = await attempt;
    } catch (err) {
      if (!isBuildError(err)) throw err;
      // The mapping made a tag Docker refuses (a placeholder's value): the operator's to fix, not the forge's.
      deps.log('webhook-build-refused', { ...logged, error: err.message });
      return sendJson(res, 200, { ignored: `the build could not be made: ${err.message}` });
    } finally {
      if (key !== undefined) handling.delete(key);
    }
    if (key !== undefined) projects.deliveries.remember(key, build.id);
    deps.log('webhook', { ...logged, outcome: 'build', build: build.id, ref: push.name });
    started.push(build);
  }
  if (!started.length) return ignored(res, deps, logged, reasons.join('; '));
  answerBuild(res, 202, started[0].summary, projects, started.length > 1 ? { builds: started.map((b) => b.id) } : {});
}

function ignored(res: ServerResponse, deps: HttpDeps, logged: Record<string, unknown>, why: string): void {
  deps.log('webhook', { ...logged, outcome: 'ignored', why });
  sendJson(res, 200, { ignored: why });
}
