import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import net, { type AddressInfo, type Socket } from 'node:net';
import { isBuildError } from '../../model/errors.js';
import type { BuildService } from '../../service/service.js';
import { FINAL_STATUSES, type BuildRecord, type BuildStatus, type BuildSummary } from '../../model/build.js';
import { asHttpError, HttpError, readJson, requestFromJson } from './body.js';
import { monitorFor } from './monitor/monitor.js';
import { addressGroup } from '../address.js';
import { HTTP_LIMIT_DEFAULTS, RETRY_AFTER_SECONDS, StreamGate, type HttpLimits } from './limits.js';
import { admitStream, followLive, FRAMES_FORMAT, NDJSON_FORMAT, NDJSON_LINES, pacerFor, replayStored, SSE_FORMAT, SSE_LINES, type Pacer, type RecordFormat } from './stream.js';
import { recordJson } from '../../model/record-json.js';
import { FRAMES_TYPE, HEARTBEAT_FRAME, recordFrame } from '../../model/record-frames.js';
import { engineRoutes } from './engines.js';
import { projectRoutes } from './projects.js';
import { allow, authorize, publicSummary, sendError, sendJson, type HttpDeps } from './respond.js';

export interface RunningHttp {
  address(): AddressInfo;
  /** Stops accepting; open streams end with their builds. */
  stopAccepting(): void;
  /** Closes every connection that is left. */
  close(): Promise<void>;
}

const STATUSES: readonly BuildStatus[] = ['queued', 'running', ...FINAL_STATUSES];
const NDJSON = 'application/x-ndjson';
const SSE = 'text/event-stream';

/** The HTTP front: node:http only (a handful of routes; no framework pays for itself here). */
export async function startHttpServer(listen: { host: string; port: number }, given: HttpDeps): Promise<RunningHttp> {
  const limits: HttpLimits = { ...HTTP_LIMIT_DEFAULTS, ...given.limits };
  const deps: HttpDeps = { ...given, limits, gate: given.gate ?? new StreamGate(limits) };
  // headersTimeout and requestTimeout are enforced by a check every connectionsCheckingInterval
  // that node starts on the server's 'listening' event (emitted below: the tcp server listens).
  // No highWaterMark: the sockets come from the tcp server below, so the http server's option never
  // reached them (the 2 MB once set here had no effect since the handover came in).
  const server = http.createServer({ requestTimeout: 60_000, headersTimeout: 20_000, connectionsCheckingInterval: 5_000, maxHeaderSize: 16 * 1024 }, (req, res) => {
    if (!admitPipelined(req, res)) return;
    void handle(req, res, deps, watch).catch((err: Error) => {
      // The client went away while its body was read (node's "aborted"): nobody to answer, nothing to log.
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET' && req.destroyed) return void res.destroy();
      if (err instanceof HttpError && !res.headersSent) {
        if (err.status === 413 || err.status === 415) res.setHeader('Connection', 'close');
        return sendError(res, err);
      }
      deps.log('http-internal-error', { method: req.method, path: pathOf(req), stack: err.stack ?? String(err) });
      if (!res.headersSent) sendError(res, new HttpError(500, 'EINTERNAL', 'unexpected failure in the server; its log has the details'));
      else res.destroy();
    });
  });
  const watch = new BuildWatch(deps.service);
  // Streams last as long as their builds; the request timeout covers receiving requests only.
  server.timeout = 0;
  // Connections are counted here, before HTTP reads a byte, so one past the limit gets an answer that
  // says when to come back (node's maxConnections closes it without a word).
  let open = 0;
  const perAddress = new Map<string, number>();
  const tcp = net.createServer((socket) => {
    if (open >= limits.maxConnections) return refuseConnection(socket, 503, 'the server has as many connections open as it allows (--http-max-connections); try again later');
    const address = addressGroup(socket.remoteAddress ?? '?');
    const fromHere = perAddress.get(address) ?? 0;
    if (limits.connectionsPerAddress && fromHere >= limits.connectionsPerAddress) {
      return refuseConnection(socket, 429, `this address has ${limits.connectionsPerAddress} connections open, the most the server allows (--http-connections-per-address); close one or try again later`);
    }
    open++;
    perAddress.set(address, fromHere + 1);
    socket.once('close', () => {
      open--;
      const n = (perAddress.get(address) ?? 1) - 1;
      if (n > 0) perAddress.set(address, n);
      else perAddress.delete(address);
    });
    server.emit('connection', socket);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(listen.port, listen.host, () => {
      tcp.off('error', reject);
      resolve();
    });
  });
  server.emit('listening');
  const address = tcp.address() as AddressInfo;
  deps.log('http-listening', { addr: `${address.address}:${address.port}`, tokens: deps.tokens.configured ? 'yes' : 'none: every API request is refused; give --api-token' });
  return {
    address: () => address,
    stopAccepting: () => {
      tcp.close();
      server.close();
    },
    close: async () => {
      tcp.close();
      server.close();
      server.closeAllConnections();
    },
  };
}

/** Requests of a socket whose answers have not all gone out (answered, written, or the socket closed). */
const unanswered = new WeakMap<Socket, number>();
/** More than a client that reads its answers ever has; browsers and curl send one at a time. */
const MAX_PIPELINED = 32;

/**
 * Node parses every request of a chunk it read, pipelined ones too, and keeps each one's answer until
 * the client reads: one that sends thousands and reads nothing would make the server hold them all
 * (50 such connections took it from 84 to 630 MB). Past MAX_PIPELINED unanswered the socket is closed.
 */
function admitPipelined(req: IncomingMessage, res: ServerResponse): boolean {
  const socket = req.socket;
  const n = (unanswered.get(socket) ?? 0) + 1;
  if (n > MAX_PIPELINED) {
    socket.destroy();
    return false;
  }
  unanswered.set(socket, n);
  res.once('close', () => unanswered.set(socket, (unanswered.get(socket) ?? 1) - 1));
  return true;
}

/** Answers a connection past --http-max-connections or --http-connections-per-address, then closes it (bounded: 2 s at most). */
function refuseConnection(socket: Socket, status: 429 | 503, message: string): void {
  const body = JSON.stringify({ error: { code: status === 503 ? 'EBUSY' : 'ETOOMANYCONNECTIONS', message, field: null } });
  socket.on('error', () => {});
  socket.resume();
  socket.end(`HTTP/1.1 ${status} ${status === 503 ? 'Service Unavailable' : 'Too Many Requests'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nRetry-After: ${RETRY_AFTER_SECONDS}\r\nConnection: close\r\n\r\n${body}`);
  setTimeout(() => socket.destroy(), 2000).unref();
}

/** The request's URL; a target that is no path of ours (`//[`, `*`) is the client's mistake: 400, nothing logged. */
function requestUrl(req: IncomingMessage): URL {
  const target = req.url ?? '/';
  try {
    // Origin form (/path) as browsers send it, or absolute form (http://host/path) as proxies may.
    if (target.startsWith('/') && !target.startsWith('//')) return new URL(`http://buildbot${target}`);
    if (/^https?:\/\/[^/]/i.test(target)) return new URL(target);
  } catch {
    // falls through to the refusal
  }
  throw new HttpError(400, 'EBADREQUEST', 'the request target is not a path of this server, e.g. /api/v1/builds');
}

async function handle(req: IncomingMessage, res: ServerResponse, deps: HttpDeps, watch: BuildWatch): Promise<void> {
  const url = requestUrl(req);
  const route = url.pathname;
  if (route === '/healthz') {
    if (!allow(req, res, ['GET', 'HEAD'])) return;
    const stopping = deps.service.isStopping;
    return sendJson(res, stopping ? 503 : 200, { status: stopping ? 'stopping' : 'ok' });
  }
  if (route === '/metrics') {
    if (!allow(req, res, ['GET']) || !authorize(req, res, deps, 'read')) return;
    if (!deps.metrics) throw new HttpError(404, 'ENOTFOUND', 'metrics are not served by this server');
    const { contentType, body } = await deps.metrics();
    res.writeHead(200, { 'Content-Type': contentType, 'Cache-Control': 'no-store' });
    return void res.end(body);
  }
  if (route === '/api/v1/events') {
    if (!allow(req, res, ['GET']) || !authorize(req, res, deps, 'read')) return;
    return watch.serve(req, res, deps);
  }
  if (route === '/api/v1/builds') {
    if (!allow(req, res, ['GET', 'POST'])) return;
    if (req.method === 'POST') {
      if (!authorize(req, res, deps, 'full')) return;
      return submit(req, res, url, deps);
    }
    if (!authorize(req, res, deps, 'read')) return;
    return list(res, url, deps);
  }
  // Projects, builds on demand and forge webhooks (src/projects/).
  if ((route.startsWith('/hooks/') || route.startsWith('/api/v1/projects')) && (await projectRoutes(req, res, url, deps))) return;
  // The engines builds are placed on, drained and resumed (src/engines/).
  if (route.startsWith('/api/v1/engines') && (await engineRoutes(req, res, url, deps))) return;
  // The web monitor's pages share this listener (src/fronts/http/monitor/).
  if (!route.startsWith('/api/') && (await monitorFor(deps).handle(req, res, url))) return;
  const match = /^\/api\/v1\/builds\/([^/]{1,64})(?:\/(events|log|cancel))?$/.exec(route);
  if (!match) return sendError(res, new HttpError(404, 'ENOTFOUND', `no such resource: ${route.length > 80 ? `${route.slice(0, 80)}…` : route}; the API lives under /api/v1/builds`));
  const [, id, action] = match;
  if (!allow(req, res, action === 'cancel' ? ['POST'] : ['GET'])) return;
  if (!authorize(req, res, deps, action === 'cancel' ? 'full' : 'read')) return;
  const summary = deps.history.get(id);
  if (!summary) return sendError(res, new HttpError(404, 'ENOTFOUND', `no build ${/^[\w-]{1,64}$/.test(id) ? id : 'with that id'}; GET /api/v1/builds lists them`));
  if (action === 'cancel') return cancel(res, id, deps);
  if (action === 'events') return events(req, res, url, summary, deps);
  if (action === 'log') return logText(req, res, url, summary, deps);
  const statuses = deps.projects?.statuses.of(id);
  return sendJson(res, 200, statuses?.length ? { ...publicSummary(summary), commit_statuses: statuses } : publicSummary(summary));
}

async function submit(req: IncomingMessage, res: ServerResponse, url: URL, deps: HttpDeps): Promise<void> {
  let request;
  try {
    request = await requestFromJson(await readJson(req));
  } catch (err) {
    if (isBuildError(err)) throw asHttpError(err);
    throw err;
  }
  let build;
  try {
    build = deps.service.submit(request, 'http');
  } catch (err) {
    if (isBuildError(err)) throw asHttpError(err);
    throw err;
  }
  const location = `/api/v1/builds/${build.id}`;
  const frames = accepts(req, FRAMES_TYPE);
  const follow = flag(url, 'follow') || accepts(req, NDJSON) || frames;
  deps.log('http-build', { build: build.id, follow });
  if (!follow) {
    res.setHeader('Location', location);
    return sendJson(res, 202, publicSummary(build.summary));
  }
  res.writeHead(200, { 'Content-Type': frames ? FRAMES_TYPE : NDJSON, Location: location, 'X-Build-Id': build.id, 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' });
  // The caller's own connection holds the build's output like an SSH channel does; dropping
  // it only stops the stream (cancelling is explicit: POST …/cancel).
  await followLive(res, build, 0, frames ? recordFrame : (record) => recordJson(record), { blocking: true });
}

function list(res: ServerResponse, url: URL, deps: HttpDeps): void {
  const status = url.searchParams.get('status') ?? undefined;
  if (status !== undefined && !STATUSES.includes(status as BuildStatus)) {
    throw new HttpError(400, 'EUSAGE', `status must be one of ${STATUSES.join(', ')}`, 'status');
  }
  const limitText = url.searchParams.get('limit') ?? '50';
  const limit = Number(limitText);
  if (!/^\d{1,4}$/.test(limitText) || limit < 1 || limit > 1000) throw new HttpError(400, 'EUSAGE', 'limit must be a whole number from 1 to 1000', 'limit');
  const serviceId = url.searchParams.get('service_id') || undefined;
  sendJson(res, 200, { builds: deps.history.list({ serviceId, status, limit }).map(publicSummary) });
}

function cancel(res: ServerResponse, id: string, deps: HttpDeps): void {
  const build = deps.service.get(id);
  if (!build) {
    const summary = deps.history.get(id)!;
    const running = summary.exit_code === null && !FINAL_STATUSES.includes(summary.status);
    throw new HttpError(409, 'ENOTCANCELLABLE', running
      ? `build ${id} runs in another process (source ${summary.source}); stop that process to cancel it`
      : `build ${id} has ended already (${summary.status})`);
  }
  if (!deps.service.cancel(id, 'cancelled over HTTP')) throw new HttpError(409, 'ENOTCANCELLABLE', `build ${id} has ended already (${build.status})`);
  deps.log('http-cancel', { build: id });
  sendJson(res, 202, publicSummary(build.summary));
}

/** Records after a seq: SSE (`id:` = seq, resume with Last-Event-ID), NDJSON or frames (`?after=`). */
async function events(req: IncomingMessage, res: ServerResponse, url: URL, summary: BuildSummary, deps: HttpDeps): Promise<void> {
  const sse = accepts(req, SSE);
  const frames = !sse && accepts(req, FRAMES_TYPE);
  const afterText = url.searchParams.get('after') ?? (sse ? req.headers['last-event-id'] : undefined) ?? '0';
  if (typeof afterText !== 'string' || !/^\d{1,15}$/.test(afterText)) throw new HttpError(400, 'EUSAGE', 'after (or Last-Event-ID) must be a record seq, a whole number', 'after');
  const after = Number(afterText);
  const heartbeat = sse ? ': heartbeat\n\n' : frames ? HEARTBEAT_FRAME : '\n';
  const pacer = openStream(req, res, deps, { 'Content-Type': sse ? SSE : frames ? FRAMES_TYPE : NDJSON, 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' }, heartbeat);
  if (!pacer) return;
  const format: RecordFormat = sse ? SSE_FORMAT : frames ? FRAMES_FORMAT : NDJSON_FORMAT;
  if (sse) pacer.write('retry: 3000\n\n');
  const build = deps.service.get(summary.id);
  if (build) await followLive(res, build, after, format, { pacer });
  else await replayStored(pacer, summary, after, deps.history, format, true, sse ? SSE_LINES : frames ? undefined : NDJSON_LINES);
}

/** The output as text, both streams as produced (or one with ?stream=); ?follow=1 until the build ends. */
async function logText(req: IncomingMessage, res: ServerResponse, url: URL, summary: BuildSummary, deps: HttpDeps): Promise<void> {
  const stream = url.searchParams.get('stream') ?? undefined;
  if (stream !== undefined && stream !== 'stdout' && stream !== 'stderr') throw new HttpError(400, 'EUSAGE', 'stream must be stdout or stderr', 'stream');
  const headers: Record<string, string> = { 'Content-Type': 'text/plain; charset=utf-8', 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' };
  if (flag(url, 'download')) headers['Content-Disposition'] = `attachment; filename="buildbot-${summary.service_id}-${summary.id}${stream ? `-${stream}` : ''}.log"`;
  const pacer = openStream(req, res, deps, headers);
  if (!pacer) return;
  const format = (r: BuildRecord) => {
    if (r.type === 'output') return !stream || r.stream === stream ? r.data : '';
    if (r.type === 'cut') return `\n[buildbot: ${r.bytes} bytes of output (${r.records} records) were cut here; the log keeps its head and tail]\n`;
    return '';
  };
  const build = deps.service.get(summary.id);
  // Without ?follow, what there is now.
  if (build) return followLive(res, build, 0, format, { pacer, until: flag(url, 'follow') ? undefined : build.lastSeq });
  return replayStored(pacer, summary, 0, deps.history, format, false);
}

/**
 * Opens a stream (events or a log) for the request's token: a Pacer once the response's head is
 * sent, or undefined once it was answered 429 with Retry-After (too many streams of its token or address).
 */
function openStream(req: IncomingMessage, res: ServerResponse, deps: HttpDeps, headers: Record<string, string>, heartbeat?: string | Buffer): Pacer | undefined {
  const refused = admitStream(req, res, deps, deps.tokens.identify(req)?.id ?? '');
  if (refused) {
    sendError(res, new HttpError(429, 'ETOOMANYSTREAMS', refused));
    return undefined;
  }
  res.writeHead(200, headers);
  // The head now, so a client knows it is streaming before the first record or heartbeat.
  res.flushHeaders();
  return pacerFor(res, deps, heartbeat);
}

/**
 * GET /api/v1/events: every change of any build of this process (submitted, waiting, a step
 * started or ended, the end) as `{"type":"build","build":{…}}`, for pages that list builds live.
 * A reader that does not keep up is dropped (it reloads the list and watches again).
 */
class BuildWatch {
  private readonly readers = new Set<(text: (sse: boolean) => string) => void>();

  constructor(service: BuildService) {
    service.observe({ changed: (build) => this.tell(build.summary) });
  }

  private tell(summary: BuildSummary): void {
    if (!this.readers.size) return;
    const json = JSON.stringify({ type: 'build', build: publicSummary(summary) });
    const text = (sse: boolean) => (sse ? `data: ${json}\n\n` : `${json}\n`);
    this.readers.forEach((reader) => reader(text));
  }

  serve(req: IncomingMessage, res: ServerResponse, deps: HttpDeps): Promise<void> {
    const sse = accepts(req, SSE);
    const pacer = openStream(req, res, deps, { 'Content-Type': sse ? SSE : NDJSON, 'Cache-Control': 'no-store', 'X-Accel-Buffering': 'no' }, sse ? ': heartbeat\n\n' : '\n');
    if (!pacer) return Promise.resolve();
    if (sse) pacer.write('retry: 3000\n\n');
    const reader = (text: (sse: boolean) => string) => {
      pacer.write(text(sse));
      if (!pacer.hasRoom) res.destroy();
    };
    this.readers.add(reader);
    return new Promise((resolve) => res.once('close', () => {
      this.readers.delete(reader);
      resolve();
    }));
  }
}

const flag = (url: URL, name: string) => ['1', 'true', 'yes'].includes(url.searchParams.get(name) ?? '');
const accepts = (req: IncomingMessage, type: string) => (req.headers.accept ?? '').toLowerCase().includes(type);
const pathOf = (req: IncomingMessage) => (req.url ?? '').split('?')[0].slice(0, 200);
