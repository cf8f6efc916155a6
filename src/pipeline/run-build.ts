import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type Docker from 'dockerode';
import { perEngine, type Config } from './config.js';
import { BuildContainers, LABELS } from '../docker/containers.js';
import type { Removals } from '../docker/removals.js';
import { errors, EXIT_FAILURE, EXIT_OK, isBuildError } from '../model/errors.js';
import { UserOutput, type BuildIO } from '../io/output.js';
import { createRedactor } from '../io/redact.js';
import type { BuildRequest } from '../request/types.js';
import type { BuildContext, BuildHooks, BuildOutcome, Step } from './context.js';
import type { ServerLog } from '../log/server-log.js';
import { elapsed, runSteps } from './runner.js';
import { createBuildSignal, timeLimitOf } from './build-signal.js';
import { Watchdog } from '../docker/watchdog.js';
import { lastBuilderImage, networkAhead } from './networks.js';
import { keepSpare, takeSpare } from './spare-networks.js';
import { engineBackground } from '../docker/background.js';
import { BuildTrace, traceEngine, withTrace } from '../log/trace.js';
import { builderStep } from './steps/builder.js';
import { buildScriptStep } from './steps/build-script.js';
import { checkoutStep } from './steps/checkout.js';
import { imageStep } from './steps/image.js';
import { loginStep } from './steps/login.js';
import { metadataStep } from './steps/metadata.js';
import { pushStep } from './steps/push.js';
import { resultStep } from './steps/result.js';
import { testStep } from './steps/test.js';

export const STEPS: readonly Step[] = [loginStep, checkoutStep, metadataStep, builderStep, buildScriptStep, imageStep, testStep, pushStep, resultStep];

export interface BuildServices {
  config: Config;
  docker: Docker;
  log: ServerLog;
  /** The id the build service gave the build; a fresh one otherwise. */
  buildId?: string;
  hooks?: BuildHooks;
  /** Removals the engine could not do are retried here after the build has ended. */
  removals?: Removals;
  /** Ids of the builds running in this process, so an orphan sweep leaves their containers alone. */
  running?: Set<string>;
}

/**
 * Runs one build and returns its exit code. Used by the local command and the SSH server
 * alike; output goes only through the request's redacting writer. Aborting the signal
 * stops git, removes every container of the build and pushes nothing more.
 */
export async function runBuild(request: BuildRequest, io: BuildIO, signal: AbortSignal, services: BuildServices): Promise<number> {
  const { config, docker, log } = services;
  const redactor = createRedactor(request.secrets);
  const buildId = services.buildId ?? randomBytes(6).toString('hex');
  if (config.trace) traceEngine(docker);
  const out = new UserOutput(io, redactor);
  let limit;
  try {
    limit = timeLimitOf(request, config);
  } catch (err) {
    if (!isBuildError(err)) throw err;
    out.errorLine(`error: ${err.message}`);
    await out.close();
    services.hooks?.finished?.({ exitCode: err.exitCode, error: { code: err.code, message: redactor.redact(err.message) } });
    return err.exitCode;
  }
  // The build's own signal: the caller's, the time limit and the watchdog's stalls in one.
  const buildSignal = createBuildSignal(signal, limit, Math.floor(config.buildTimeoutMs / 1000));
  const startEnded = engineBackground(docker).buildStarting();
  const ctx: BuildContext = {
    request, config, docker, buildId, log, out,
    buildStarted: startEnded,
    signal: buildSignal.signal,
    watchdog: new Watchdog(config.stallTimeoutMs, buildSignal.fail, (probe) => (docker.ping as (opts: object) => Promise<unknown>).call(docker, { abortSignal: probe })),
    trace: config.trace ? new BuildTrace() : undefined,
    startedAt: Date.now(),
    containers: new BuildContainers(docker, {
      [LABELS.build]: buildId, [LABELS.service]: request.serviceId, [LABELS.host]: os.hostname(), [LABELS.pid]: String(process.pid),
    }, services.removals),
    cleanups: [],
    hooks: services.hooks,
    background: [],
  };
  log('build-start', { build: buildId, service: request.serviceId, revision: request.revision, image: request.image, tags: request.tags.join(',') });
  // The builder's network namespace is made while the login is checked and git runs.
  ctx.builderNetwork = withTrace(ctx.trace, () => takeSpare(ctx, lastBuilderImage(perEngine(config, request.serviceId))) ?? networkAhead(ctx));
  let exitCode = EXIT_OK;
  let error: BuildOutcome['error'];
  services.running?.add(buildId);
  try {
    await withTrace(ctx.trace, () => runSteps(ctx, STEPS));
  } catch (err) {
    // Whatever the step made of the abort (an AbortError, a closed stream), the reason is what the user sees.
    let failure = ctx.signal.aborted ? buildSignal.failure() : err;
    // Which engine went away, when the server has several: the one line the user reads names it.
    if (isBuildError(failure) && failure.code === 'EENGINELOST' && config.engineName) failure = errors.engineLostOn(failure, config.engineName);
    exitCode = isBuildError(failure) ? failure.exitCode : EXIT_FAILURE;
    error = isBuildError(failure)
      ? { code: failure.code, message: redactor.redact(failure.message) }
      : { code: 'EINTERNAL', message: 'unexpected failure; the server log has the details' };
    if (isBuildError(failure)) {
      ctx.out.errorLine(`error: ${failure.message}`);
    } else {
      // Unknown errors: the message to the user, the stack only to the server log.
      const message = failure instanceof Error ? failure.message : String(failure);
      ctx.out.errorLine(`error: unexpected failure: ${message.split('\n')[0]}; the server log has the details`);
      log('build-internal-error', { build: buildId, stack: redactor.redact(failure instanceof Error ? failure.stack ?? message : message) });
    }
  } finally {
    startEnded();
    buildSignal.dispose();
    const cleanupDone = ctx.trace?.step('cleanup');
    await withTrace(ctx.trace, () => cleanUp(ctx));
    cleanupDone?.();
    services.running?.delete(buildId);
  }
  for (const timing of ctx.trace?.timings() ?? []) log('build-trace', { build: buildId, ...timing });
  if (config.traceCalls) for (const call of ctx.trace?.calls() ?? []) log('build-trace-call', { build: buildId, ...call });
  log('build-end', { build: buildId, service: request.serviceId, exit: exitCode, duration_ms: Date.now() - ctx.startedAt });
  if (exitCode !== EXIT_OK) {
    const how = error?.code === 'ECANCELLED' ? 'cancelled' : error?.code === 'ETIMEOUT' ? 'stopped at its time limit' : 'failed';
    ctx.out.line(`${elapsed(ctx)} | # ${how} with exit code ${exitCode}`);
  }
  await ctx.out.close();
  services.hooks?.finished?.({ exitCode, commit: ctx.commit, digest: ctx.digest, error });
  // The next build of the service finds its builder's namespace ready (made after this one's end).
  const builderImage = lastBuilderImage(perEngine(config, request.serviceId));
  if (exitCode === EXIT_OK && builderImage) keepSpare(docker, config, request.serviceId, builderImage, log);
  // The build's containers go after its exit record, when no build is starting (src/docker/background.ts).
  void engineBackground(docker).run(() => removeContainers(ctx));
  return exitCode;
}

const BACKGROUND_WAIT_MS = 30_000;

async function cleanUp(ctx: BuildContext): Promise<void> {
  // Background work may still be creating a container: it must be known before removeAll.
  // Bounded: an engine that stopped answering must not hold the build's end for ever.
  let timer: NodeJS.Timeout | undefined;
  const settled = await Promise.race([
    Promise.allSettled(ctx.background).then(() => true),
    new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), BACKGROUND_WAIT_MS))),
  ]);
  clearTimeout(timer);
  if (!settled) ctx.log('cleanup-failed', { build: ctx.buildId, error: `background work still running after ${BACKGROUND_WAIT_MS / 1000} s` });
  // The containers go after the exit record (removeContainers); nothing here waits for them.
  for (const task of ctx.cleanups.reverse()) {
    try {
      await task();
    } catch (err) {
      ctx.log('cleanup-failed', { build: ctx.buildId, error: ctx.out.redactor.redact((err as Error).message) });
    }
  }
}

async function removeContainers(ctx: BuildContext): Promise<void> {
  try {
    await ctx.containers.removeAll();
  } catch (err) {
    ctx.log('cleanup-failed', { build: ctx.buildId, error: ctx.out.redactor.redact((err as Error).message) });
  }
}
