import type { IncomingMessage, ServerResponse } from 'node:http';
import type { EngineView } from '../../engines/types.js';
import { HttpError } from './body.js';
import { allow, authorize, sendJson, type HttpDeps } from './respond.js';

/**
 * The HTTP front of the engines (issue 19): GET /api/v1/engines (read token) lists them,
 * POST /api/v1/engines/{name}/drain and …/resume (full token) stop and restart placing builds
 * on one. A draining engine's running builds finish; the state is the pool's (kept in the work dir).
 */

/** Serves /api/v1/engines…; false when the route is none of them. */
export async function engineRoutes(req: IncomingMessage, res: ServerResponse, url: URL, deps: HttpDeps): Promise<boolean> {
  const route = url.pathname;
  if (route === '/api/v1/engines') {
    if (!allow(req, res, ['GET']) || !authorize(req, res, deps, 'read')) return true;
    sendJson(res, 200, { engines: engineList(deps) });
    return true;
  }
  const action = /^\/api\/v1\/engines\/([^/]{1,200})\/(drain|resume)$/.exec(route);
  if (action) {
    if (!allow(req, res, ['POST']) || !authorize(req, res, deps, 'full')) return true;
    // The body, if any, says nothing: read and dropped so the connection can be reused.
    req.resume();
    const view = await setDraining(deps, decode(action[1]), action[2] === 'drain', 'http');
    sendJson(res, 200, { engine: shown(view) });
    return true;
  }
  const one = /^\/api\/v1\/engines\/([^/]{1,200})$/.exec(route);
  if (one) {
    if (!allow(req, res, ['GET']) || !authorize(req, res, deps, 'read')) return true;
    const name = decode(one[1]);
    const view = engineList(deps).find((e) => e.name === name);
    if (!view) throw notFound(name);
    sendJson(res, 200, { engine: view });
    return true;
  }
  return false;
}

/** The engines as the API and the monitor show them (none when the server was given no pool). */
export function engineList(deps: HttpDeps): EngineView[] {
  return (deps.engines?.list() ?? []).map(shown);
}

/** Drains or resumes an engine for the API or the monitor; 404 (ENOTFOUND, as for an unknown build) for a name the server does not have. */
export async function setDraining(deps: HttpDeps, name: string, draining: boolean, via: 'http' | 'monitor'): Promise<EngineView> {
  if (!deps.engines) throw notFound(name);
  const view = draining ? await deps.engines.drain(name) : await deps.engines.resume(name);
  if (!view) throw notFound(name);
  deps.log(draining ? 'engine-drain' : 'engine-resume', { engine: view.name, via, running: view.running });
  return view;
}

/** Only the fields the issue names, in its order: nothing the pool may add later leaks by accident. */
const shown = (e: EngineView): EngineView => ({ name: e.name, url: e.url, state: e.state, draining: e.draining, slots: e.slots, running: e.running });

const notFound = (name: string) => new HttpError(404, 'ENOTFOUND', `no engine ${/^[a-z0-9-]{1,32}$/.test(name) ? `"${name}" ` : ''}on this server; GET /api/v1/engines lists them`);

const decode = (text: string) => {
  try {
    return decodeURIComponent(text);
  } catch {
    return '';
  }
};
