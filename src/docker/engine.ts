import http from 'node:http';
import type net from 'node:net';
import Docker from 'dockerode';
import { errors } from '../model/errors.js';
import { dockerodeOptions, SSH_REFUSED, type EngineTarget } from './remote.js';

/** docker-modem reads these from process.env whatever it is given (and reads the certificate files they name). */
const MODEM_ENV = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_CLIENT_TIMEOUT', 'DOCKER_PATH_PREFIX'];

/**
 * The engine client. The configuration was read once (src/docker/remote.ts); docker-modem is
 * built with those variables out of its sight, so that its own defaults (an http connection
 * with DOCKER_CERT_PATH's certificates loaded, a crash on an unreadable ca.pem) cannot mix in.
 */
export function createDocker(target: EngineTarget, toolEnv: Record<string, string>): Docker {
  const saved = MODEM_ENV.map((name) => [name, process.env[name]] as const);
  for (const [name] of saved) delete process.env[name];
  let docker: Docker;
  try {
    docker = new Docker(dockerodeOptions(target, toolEnv) as Docker.DockerOptions);
  } finally {
    for (const [name, value] of saved) if (value !== undefined) process.env[name] = value;
  }
  const modem = docker.modem as { agent?: http.Agent };
  // Without an agent of its own (unix socket, plain TCP, the ssh proxy) the modem used Node's
  // global one: a private one with the same settings, so that the patch below stays ours.
  modem.agent = failCutAnswers(modem.agent ?? new http.Agent((http.globalAgent as unknown as { options: http.AgentOptions }).options));
  return docker;
}

/**
 * Makes a request fail when the engine's connection ends in the middle of its answer.
 * docker-modem reads a plain (not streamed) answer to its 'end' only, and Node destroys an
 * unfinished answer without an 'error' unless someone listens: such a call never settles, and
 * no abort reaches it either. POST /containers/{id}/wait is one: the engine sends its headers
 * at once and the body when the container exits, so an engine cut while build.sh ran left the
 * build waiting for ever (issue 9; the faults e2e file cuts the engine at such a moment). The
 * request's own 'error' is what docker-modem does listen to: it is raised there, with the code
 * of a cut connection (src/docker/wait.ts counts it as the engine going away). A streamed
 * answer already handed out is failed by Node itself for its reader; docker-modem ignores a
 * late request error, so this changes nothing for those.
 */
export function failCutAnswers<T extends http.Agent>(agent: T): T {
  const inner = agent as unknown as { addRequest(req: http.ClientRequest, options: unknown): void };
  const addRequest = inner.addRequest.bind(agent);
  inner.addRequest = (req, options) => {
    req.once('socket', (socket: net.Socket) => {
      // 'end' is the peer's close only; our own destroy (an abort, a reader done early) is not one.
      const onEnd = () => {
        const res = (req as { res?: http.IncomingMessage }).res;
        if (!res || res.complete) return;
        const err = Object.assign(new Error('the engine closed the connection in the middle of an answer'), { code: 'ECONNRESET' });
        req.emit('error', err);
      };
      // A kept-alive socket serves many requests: the listener goes with this one.
      socket.once('end', onEnd);
      req.once('close', () => socket.off('end', onEnd));
    });
    addRequest(req, options);
  };
  return agent;
}

export interface StreamEvent {
  stream?: string;
  status?: string;
  id?: string;
  progress?: string;
  error?: string;
  errorDetail?: { message?: string; code?: number };
  /** An object, or for BuildKit progress a base64 protobuf message. */
  aux?: Record<string, unknown> | string;
}

export class EngineStreamError extends Error {}

/**
 * Reads the engine's JSON progress stream (build, push, pull). The HTTP status says 200
 * even when the operation failed: failure arrives as an {error, errorDetail} event, so
 * every event is inspected and the first error rejects.
 */
export function followStream(stream: NodeJS.ReadableStream, onEvent: (event: StreamEvent) => void): Promise<void> {
  return new Promise((resolve, reject) => {
    let buffer = '';
    let failed: Error | undefined;
    const handle = (line: string) => {
      if (!line.trim() || failed) return;
      let event: StreamEvent;
      try {
        event = JSON.parse(line) as StreamEvent;
      } catch {
        return;
      }
      if (event.error || event.errorDetail) {
        failed = new EngineStreamError((event.errorDetail?.message ?? event.error ?? 'unknown error').trim());
        return;
      }
      onEvent(event);
    };
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        handle(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
      }
    });
    stream.on('end', () => {
      handle(buffer);
      if (failed) reject(failed);
      else resolve();
    });
    stream.on('error', (err) => reject(failed ?? err));
  });
}

/** The HTTP status of a dockerode error, if it has one. */
export function statusOf(err: unknown): number | undefined {
  return typeof err === 'object' && err !== null && 'statusCode' in err ? Number((err as { statusCode: unknown }).statusCode) : undefined;
}

/** The engine's own message of a dockerode error, without dockerode's "(HTTP code 500) server error -" prefix. */
export function engineMessage(err: unknown): string {
  if (typeof err === 'object' && err !== null && 'json' in err) {
    const json = (err as { json: unknown }).json;
    if (json && typeof json === 'object' && 'message' in json) return String((json as { message: unknown }).message).trim();
    if (Buffer.isBuffer(json) || typeof json === 'string') {
      const text = json.toString().trim();
      try {
        return String((JSON.parse(text) as { message?: string }).message ?? text);
      } catch {
        return text;
      }
    }
  }
  return err instanceof Error ? err.message : String(err);
}

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EHOSTUNREACH', 'ETIMEDOUT', 'ENOTFOUND', 'EAI_AGAIN', 'EPIPE']);
// Node's names for a TLS handshake that failed: the engine's certificate, or ours.
const TLS_FAILURE = /^(ERR_TLS_|ERR_SSL_|EPROTO$|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|UNABLE_TO_)/;

/** Turns "cannot connect to the engine" into the catalogue's error; anything else is returned unchanged. */
/** Which engine a build talks to and how messages name it (the build's Config has both). */
export interface EngineRef {
  docker: EngineTarget;
  dockerLabel: string;
}

export function asEngineError(err: unknown, config: EngineRef): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  const message = err instanceof Error ? err.message.split('\n')[0] : String(err);
  const remote = config.docker.kind !== 'unix';
  if (statusOf(err) === 400 && /HTTP request to an HTTPS server/i.test(engineMessage(err))) {
    return errors.remoteEngine(config.dockerLabel, 'the engine speaks TLS', 'set DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH to the directory holding ca.pem, cert.pem and key.pem');
  }
  const sshRefused = statusOf(err) === 502 && engineMessage(err).startsWith(SSH_REFUSED);
  if (sshRefused) {
    const reason = engineMessage(err).slice(SSH_REFUSED.length);
    return errors.remoteEngine(config.dockerLabel, reason, /host key/i.test(reason)
      ? `the engine host's SSH key is not the one pinned in ${config.docker.kind === 'ssh' ? config.docker.knownHosts : 'known_hosts'}; add it (ssh-keyscan) after checking its fingerprint, or find out why it changed`
      : 'check that ssh to that host works with the key and user given, and that the docker CLI is installed there');
  }
  if (statusOf(err) !== undefined || !code) return err;
  if (TLS_FAILURE.test(code)) {
    return errors.remoteEngine(config.dockerLabel, `TLS: ${message}`, 'check that DOCKER_CERT_PATH holds the ca.pem that signed the engine\'s certificate (made for this host name or address) and a client cert.pem and key.pem it accepts');
  }
  if (UNREACHABLE.has(code)) {
    return remote ? errors.remoteEngine(config.dockerLabel, code, 'check DOCKER_HOST and that the engine listens there') : errors.engineUnreachable(config.dockerLabel, code);
  }
  return err;
}
