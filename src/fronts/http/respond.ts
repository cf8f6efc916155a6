import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ServerLog } from '../../log/server-log.js';
import type { Engines } from '../../engines/types.js';
import type { BuildSummary } from '../../model/build.js';
import type { ProjectBuilds } from '../../projects/builds.js';
import type { BuildService } from '../../service/service.js';
import type { History } from '../../store/files/history.js';
import type { Access, Tokens } from './auth.js';
import { HttpError } from './body.js';
import type { HttpLimits, StreamGate } from './limits.js';

/** What the HTTP front's routes (API, monitor, projects) are handed by the composition root. */
export interface HttpDeps {
  service: BuildService;
  history: History;
  tokens: Tokens;
  log: ServerLog;
  /** Prometheus text for GET /metrics. */
  metrics?: () => Promise<{ contentType: string; body: string }>;
  /** Comment lines on an idle event stream, so proxies and clients know it is alive. */
  heartbeatMs?: number;
  /** The SSH front's port, for the commands the monitor shows (none: SSH is not served). */
  sshPort?: number;
  /** The projects file's builds, webhooks and statuses (--projects); none without it. */
  projects?: ProjectBuilds;
  /** What one client may hold (defaults: HTTP_LIMIT_DEFAULTS). */
  limits?: Partial<HttpLimits>;
  /** Counts the open streams of the API and the monitor together (made by startHttpServer when not given). */
  gate?: StreamGate;
  /** The Docker engines builds are placed on (issue 19): GET /api/v1/engines, drain, resume, the monitor's strip. */
  engines?: Engines;
}

/** 401 without a valid token (with WWW-Authenticate), 403 for a read token where full access is needed. */
export function authorize(req: IncomingMessage, res: ServerResponse, deps: HttpDeps, need: Access): boolean {
  const access = deps.tokens.check(req);
  if (access === 'none') {
    const given = req.headers.authorization !== undefined;
    const bearer = given && /^Bearer /i.test(req.headers.authorization!);
    res.setHeader('WWW-Authenticate', `Bearer realm="buildbot"${given ? ', error="invalid_token"' : ''}`);
    sendError(res, new HttpError(401, 'EUNAUTHORIZED', !deps.tokens.configured
      ? 'this server has no API token configured, so every API request is refused; start it with --api-token (or BUILDBOT_API_TOKENS)'
      : bearer ? 'the token is not valid for this server'
        : given ? 'the Authorization header must read "Bearer TOKEN"' : 'send a token: Authorization: Bearer TOKEN'));
    return false;
  }
  if (need === 'full' && access !== 'full') {
    sendError(res, new HttpError(403, 'EFORBIDDEN', 'this token is read-only; starting or cancelling builds needs a full-access token (--api-token)'));
    return false;
  }
  return true;
}

export function allow(req: IncomingMessage, res: ServerResponse, methods: string[]): boolean {
  if (methods.includes(req.method ?? '')) return true;
  res.setHeader('Allow', methods.join(', '));
  sendError(res, new HttpError(405, 'EMETHOD', `use ${methods.join(' or ')} here`));
  return false;
}

/** What the API shows of a build: its summary without the process that ran it. */
export function publicSummary(summary: BuildSummary): Omit<BuildSummary, 'host' | 'pid'> {
  const { host: _host, pid: _pid, ...shown } = summary;
  return shown;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), 'Cache-Control': 'no-store' });
  res.end(text);
}

export function sendError(res: ServerResponse, err: HttpError): void {
  sendJson(res, err.status, { error: { code: err.code, message: err.message, field: err.field ?? null } });
}

