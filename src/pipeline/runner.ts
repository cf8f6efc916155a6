import { connectionLossDetail, isEngineConnectionLoss } from '../docker/wait.js';
import { errors, isBuildError } from '../model/errors.js';
import type { BuildContext, Step } from './context.js';

export function elapsed(ctx: BuildContext): string {
  return `${((Date.now() - ctx.startedAt) / 1000).toFixed(1)}s`;
}

/**
 * Runs the steps in order, each announced by a header with the time since the build started,
 * and reported to ctx.hooks as it starts and ends.
 */
export async function runSteps(ctx: BuildContext, steps: readonly Step[]): Promise<void> {
  for (const step of steps) {
    ctx.signal.throwIfAborted();
    if (step.skip?.(ctx)) continue;
    ctx.out.line(`${elapsed(ctx)} | # ${step.name}: ${step.describe(ctx)}`);
    const started = Date.now();
    if (ctx.hooks?.step) {
      await outputWritten(ctx);
      ctx.hooks.step(step.name, 'start', {});
    }
    const stepDone = ctx.trace?.step(step.name);
    let ok = false;
    try {
      await step.run(ctx);
      ok = true;
    } catch (err) {
      throw asFault(err, ctx, step);
    } finally {
      stepDone?.();
      if (ctx.hooks?.step) {
        await outputWritten(ctx);
        ctx.hooks.step(step.name, 'end', { durationMs: Date.now() - started, ok });
      }
    }
  }
}

/**
 * Resolves once everything written to the build's output so far has reached its target, so a
 * step event never overtakes output that is still waiting for a slow client.
 */
function outputWritten(ctx: BuildContext): Promise<void> {
  const empty = Buffer.alloc(0);
  return Promise.all([ctx.out.stdout, ctx.out.stderr].map((stream) => new Promise<void>((resolve) => {
    if (stream.writableEnded) resolve();
    else stream.write(empty, () => resolve());
  }))).then(() => undefined);
}

/**
 * Faults of the machine rather than of the build, wherever in a step they strike, become the
 * catalogue's errors: the user reads "no space left in <work dir>" or "the engine went away
 * while running the image step", not an unexpected failure with a system call in it.
 */
function asFault(err: unknown, ctx: BuildContext, step: Step): unknown {
  if (isBuildError(err) || ctx.signal.aborted) return err;
  if ((err as NodeJS.ErrnoException | undefined)?.code === 'ENOSPC') return errors.noSpace(ctx.config.workDir);
  if (isEngineConnectionLoss(err)) return errors.engineLost(`running the ${step.name} step`, connectionLossDetail(err));
  return err;
}
