import Docker from 'dockerode';
import type { Config } from '../config.js';
import { errors } from '../errors.js';
import { dockerodeOptions, SSH_REFUSED } from './remote.js';

/** docker-modem reads these from process.env whatever it is given (and reads the certificate files they name). */
const MODEM_ENV = ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH', 'DOCKER_CLIENT_TIMEOUT', 'DOCKER_PATH_PREFIX'];

/**
 * The engine client. The configuration was read once (src/docker/remote.ts); docker-modem is
 * built with those variables out of its sight, so that its own defaults (an http connection
 * with DOCKER_CERT_PATH's certificates loaded, a crash on an unreadable ca.pem) cannot mix in.
 */
export function createDocker(config: Config): Docker {
  const saved = MODEM_ENV.map((name) => [name, process.env[name]] as const);
  for (const [name] of saved) delete process.env[name];
  try {
    return new Docker(dockerodeOptions(config.docker, config.toolEnv) as Docker.DockerOptions);
  } finally {
    for (const [name, value] of saved) if (value !== undefined) process.env[name] = value;
  }
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
export function asEngineError(err: unknown, config: Config): unknown {
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
