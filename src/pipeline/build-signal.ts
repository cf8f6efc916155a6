import type { Config } from './config.js';
import { BuildError, errors, isBuildError } from '../model/errors.js';
import type { BuildRequest } from '../request/types.js';

/**
 * The signal a build runs under: aborted when its caller goes (Ctrl-C, a disconnect, a
 * shutdown), when it runs past its time limit, or when the watchdog finds a stall. Every
 * engine request and child process of the build listens to it, so each of these ends the build
 * the same way: requests cut, containers removed, the lock released. The reason says which.
 */
export interface BuildSignal {
  signal: AbortSignal;
  /** Ends the build with this error (a stall). The first reason wins. */
  fail(err: BuildError): void;
  /** The error the build ends with when its signal aborted: the time limit, a stall, or cancelled. */
  failure(): BuildError;
  dispose(): void;
}

/** The build's time limit in seconds: the server's, or the request's --timeout, which may only lower it. */
export function timeLimitOf(request: BuildRequest, config: Config): { seconds: number; requested: boolean } {
  const limit = Math.floor(config.buildTimeoutMs / 1000);
  if (request.timeoutSeconds === undefined) return { seconds: limit, requested: false };
  if (request.timeoutSeconds > limit) throw errors.timeoutAboveLimit(request.timeoutSeconds, limit);
  return { seconds: request.timeoutSeconds, requested: true };
}

export function createBuildSignal(outer: AbortSignal, limit: { seconds: number; requested: boolean }, serverLimitSeconds: number): BuildSignal {
  const controller = new AbortController();
  const fail = (err: BuildError) => {
    if (!controller.signal.aborted) controller.abort(err);
  };
  const onOuter = () => fail(errors.cancelled());
  if (outer.aborted) onOuter();
  else outer.addEventListener('abort', onOuter, { once: true });
  const timer = setTimeout(() => fail(errors.timeLimit(limit.seconds, limit.requested, serverLimitSeconds)), limit.seconds * 1000);
  timer.unref();
  return {
    signal: controller.signal,
    fail,
    failure: () => (isBuildError(controller.signal.reason) ? controller.signal.reason : errors.cancelled()),
    dispose: () => {
      clearTimeout(timer);
      outer.removeEventListener('abort', onOuter);
    },
  };
}
