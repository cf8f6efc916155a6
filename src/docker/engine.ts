import Docker from 'dockerode';
import type { Config } from '../config.js';
import { errors } from '../errors.js';

export function createDocker(config: Config): Docker {
  return new Docker(config.docker);
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

const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOENT', 'EACCES', 'ECONNRESET', 'EHOSTUNREACH', 'ETIMEDOUT']);

/** Turns "cannot connect to the engine" into the catalogue's error; anything else is returned unchanged. */
export function asEngineError(err: unknown, config: Config): unknown {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code && UNREACHABLE.has(code) && statusOf(err) === undefined) return errors.engineUnreachable(config.dockerLabel, code);
  return err;
}
