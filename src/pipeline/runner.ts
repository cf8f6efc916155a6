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
