import type { BuildContext, Step } from './context.js';

export function elapsed(ctx: BuildContext): string {
  return `${((Date.now() - ctx.startedAt) / 1000).toFixed(1)}s`;
}

/** Runs the steps in order, each announced by a header with the time since the build started. */
export async function runSteps(ctx: BuildContext, steps: readonly Step[]): Promise<void> {
  for (const step of steps) {
    ctx.signal.throwIfAborted();
    ctx.out.line(`${elapsed(ctx)} | # ${step.name}: ${step.describe(ctx)}`);
    const stepDone = ctx.trace?.step(step.name);
    try {
      await step.run(ctx);
    } finally {
      stepDone?.();
    }
  }
}
