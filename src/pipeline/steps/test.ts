import { quote } from 'shell-quote';
import { errors } from '../../model/errors.js';
import { runAttached } from '../../docker/containers.js';
import { limitsHostConfig } from '../../docker/limits.js';
import { removeLater, type Step } from '../context.js';
import { joinNetwork } from '../../docker/netns.js';

/** Runs the Dockerfile's #test_in_container_entrypoint in the built image; nothing is pushed if it fails. */
export const testStep: Step = {
  name: 'test',
  // Quoted as a shell would need it, so the header reads as the command that runs.
  describe: ({ metadata }) => (metadata?.testEntrypoint ? quote(metadata.testEntrypoint) : 'none (no #test_in_container_entrypoint line in the Dockerfile)'),
  async run(ctx) {
    // The image step has read the builder's /project: the builder goes while the test runs.
    if (ctx.builder) ctx.builderRemoved = removeLater(ctx, ctx.builder);
    const entrypoint = ctx.metadata?.testEntrypoint;
    if (!entrypoint) return;
    // Started in the background earlier; waited for here, so under the watchdog like any engine call.
    const holder = await ctx.watchdog.engine('starting the network namespace for the in-image test', async () => ctx.testNetwork);
    const container = await ctx.watchdog.engine('creating the test container', () => ctx.containers.create('test', {
      Image: ctx.imageId!,
      Entrypoint: entrypoint,
      Cmd: [],
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { NetworkMode: joinNetwork(holder, ctx.config.buildNetwork), ...limitsHostConfig(ctx.config.buildLimits) },
    }));
    const code = await runAttached(container, ctx.out.stdout, ctx.out.stderr, ctx.signal, { watchdog: ctx.watchdog, doing: 'running the in-image test' });
    // Removed while the push runs; the build's cleanup waits for it.
    removeLater(ctx, container, holder);
    if (code !== 0) throw errors.testFailed(code);
  },
};
