import net from 'node:net';
import type Docker from 'dockerode';
import { errors } from '../model/errors.js';
import { statusOf } from './engine.js';

/**
 * Whether an engine call failed because the connection to the engine failed (refused, the
 * socket gone, cut in the middle) rather than with an answer from the engine. Only errors of
 * the connection itself count: an ENOENT from opening a file is not the engine going away.
 */
export function isEngineConnectionLoss(err: unknown): boolean {
  if (statusOf(err) !== undefined || typeof err !== 'object' || err === null) return false;
  const { code, syscall } = err as NodeJS.ErrnoException;
  // "socket hang up" (a request cut before its answer) carries ECONNRESET too.
  if (code === 'ECONNRESET' || code === 'EPIPE') return true;
  return (code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'EACCES') && syscall === 'connect';
}

export const connectionLossDetail = (err: unknown) => {
  const { code } = err as NodeJS.ErrnoException;
  return code === 'ECONNRESET' ? 'its connection was cut' : code === 'EPIPE' ? 'its connection was closed' : `${code}: it no longer answers`;
};

/** How long the check "is the engine still there?" after a failed container may take. */
const ENGINE_CHECK_MS = 5_000;

/**
 * Whether the engine accepts a new connection. A fresh one, not a request: Node's agent would
 * send a request over a kept-alive connection, which a stopping engine still serves after it
 * has closed its socket to new ones. An engine that does not answer in time counts as there.
 */
export function acceptsConnections(docker: Pick<Docker.Container, 'modem'>): Promise<boolean> {
  const modem = docker.modem as { socketPath?: string; host?: string; port?: number | string };
  const target = modem.socketPath ? { path: modem.socketPath } : modem.host && modem.port ? { host: modem.host, port: Number(modem.port) } : undefined;
  if (!target) return Promise.resolve(true);
  return new Promise((resolve) => {
    const socket = net.connect(target);
    const done = (accepted: boolean) => {
      socket.destroy();
      resolve(accepted);
    };
    socket.setTimeout(ENGINE_CHECK_MS, () => done(true));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/**
 * Waits for a started container to exit and returns its exit code. `what` names the step for
 * the error when the engine goes away meanwhile:
 * - killed or crashed, the engine drops the wait's connection: that is EENGINELOST, not an
 *   "unexpected failure: socket hang up";
 * - stopped gracefully, the engine first closes its socket to new connections, then stops every
 *   container, whose exit code (137, 143) reaches the wait as an ordinary answer. A non-zero
 *   exit is therefore followed by one fresh connection: refused means the engine is stopping,
 *   and the user reads that, not "build.sh exited with code 137".
 */
export async function waitForExit(container: Docker.Container, signal: AbortSignal, what: string): Promise<number> {
  let result: { StatusCode: number; Error?: { Message?: string } | null };
  try {
    result = (await container.wait({ abortSignal: signal } as object)) as typeof result;
  } catch (err) {
    if (!signal.aborted && isEngineConnectionLoss(err)) throw errors.engineLost(what, connectionLossDetail(err));
    throw err;
  }
  if (result.Error?.Message) throw new Error(`the container failed: ${result.Error.Message}`);
  if (result.StatusCode !== 0 && !signal.aborted && !(await acceptsConnections(container))) throw errors.engineStopped(what, result.StatusCode);
  return result.StatusCode;
}
