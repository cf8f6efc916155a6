import { errors } from '../../errors.js';
import { runAttached } from '../../docker/containers.js';
import { limitsHostConfig } from '../../docker/limits.js';
import type { Step } from '../context.js';

/** Runs the Dockerfile's #test_in_container_entrypoint in the built image; nothing is pushed if it fails. */
export const testStep: Step = {
  name: 'test',
  describe: ({ metadata }) => (metadata?.testEntrypoint ? metadata.testEntrypoint.join(' ') : 'none (no #test_in_container_entrypoint line in the Dockerfile)'),
  async run(ctx) {
    const entrypoint = ctx.metadata?.testEntrypoint;
    if (!entrypoint) return;
    const container = await ctx.watchdog.engine('creating the test container', () => ctx.containers.create('test', {
      Image: ctx.imageId!,
      Entrypoint: entrypoint,
      Cmd: [],
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { NetworkMode: ctx.config.buildNetwork, ...limitsHostConfig(ctx.config.buildLimits) },
    }));
    const code = await runAttached(container, ctx.out.stdout, ctx.out.stderr, ctx.signal, { watchdog: ctx.watchdog, doing: 'running the in-image test' });
    await ctx.watchdog.engine('removing the test container', () => ctx.containers.remove(container));
    if (code !== 0) throw errors.testFailed(code);
  },
};
