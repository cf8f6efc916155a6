import { withProgress } from '../../docker/watchdog.js';
import { errors, isBuildError } from '../../model/errors.js';
import { ensureImage, runAttached } from '../../docker/containers.js';
import { limitsHostConfig } from '../../docker/limits.js';
import { createContextFilter } from '../../context/filter.js';
import { packDirectory } from '../../context/tar.js';
import { authConfig, removeLater, type BuildContext, type Step } from '../context.js';
import { joinNetwork } from '../../docker/netns.js';
import { networkAhead, rememberBuilderImage } from '../networks.js';
import { perEngine } from '../config.js';
import { takeSpare } from '../spare-networks.js';
import { splitImageRef } from '../../request/registry.js';
import { boundCaches, cacheMounts } from '../build-cache.js';

const NOT_READY = Symbol('not ready');

/** The image build.sh's #build_inside_docker_image line names, pulled when the engine lacks it; its normalized name. */
async function pullBuilder(ctx: BuildContext, named: string): Promise<string> {
  // The push credentials go only to the push registry, named by the same rule as --image.
  let image: string;
  let registry: string;
  try {
    ({ ref: image, registry } = splitImageRef(named, 'the builder image'));
  } catch (err) {
    throw isBuildError(err) ? errors.badBuilderImage(err.message) : err;
  }
  const sameRegistry = registry === ctx.request.registry.server;
  await ensureImage(ctx.docker, image, 'builder', sameRegistry ? authConfig(ctx) : undefined, ctx.signal,
    (line) => ctx.out.line(line), (detail) => errors.imageMissing(image, 'builder', detail), ctx.watchdog);
  return image;
}

// Runs build.sh even when git lost its executable bit.
const RUN_BUILD_SCRIPT = 'if [ -x ./build.sh ]; then exec ./build.sh; else exec sh ./build.sh; fi';

/**
 * Runs ./build.sh in the builder image with the source at /project. Files go in and out
 * as tar streams, never bind mounts, so this works when the server itself runs in a
 * container or talks to a remote engine. The container gets no Docker socket and no key.
 */
export const buildScriptStep: Step = {
  name: 'build.sh',
  describe: ({ metadata }) => (metadata?.builderImage ? `./build.sh in ${metadata.builderImage}` : 'none; the repository is the build context'),
  async run(ctx) {
    const named = ctx.metadata?.builderImage;
    if (!named) return;
    const image = ctx.metadata!.builderBuilt ? named : await pullBuilder(ctx, named);

    // A namespace made ahead is taken only when it is ready: waiting for it would cost what making
    // one costs (a rebuild reaches this point within milliseconds). One still on its way serves
    // the test instead. Nothing is waited for here, so no watchdog is needed.
    const ahead = ctx.builderNetwork && (await Promise.race([ctx.builderNetwork, Promise.resolve(NOT_READY)]));
    const holder = ahead === NOT_READY ? undefined : ahead;
    if (ahead === NOT_READY && ctx.metadata!.testEntrypoint) ctx.testNetwork = ctx.builderNetwork;
    const caches = ctx.metadata!.buildCaches ?? [];
    // --reset_build_cache also clears what a removed #build_cache line left.
    const mounts = caches.length || ctx.request.build.resetBuildCache ? await cacheMounts(ctx, caches) : undefined;
    const container = await ctx.watchdog.engine('creating the build.sh container', () => ctx.containers.create('builder', {
      Image: image,
      Entrypoint: ['/bin/sh', '-c', RUN_BUILD_SCRIPT],
      Cmd: [],
      WorkingDir: '/project',
      Env: [
        `BUILDBOT_SERVICE_ID=${ctx.request.serviceId}`,
        `BUILDBOT_REVISION=${ctx.commit}`,
        `BUILDBOT_VERSION=${ctx.metadata!.version}`,
      ],
      AttachStdout: true,
      AttachStderr: true,
      HostConfig: { NetworkMode: joinNetwork(holder, ctx.config.buildNetwork), ...limitsHostConfig(ctx.config.buildLimits), ...(mounts ? { Mounts: mounts } : {}) },
    }));
    // Progress is the engine taking the checkout in, chunk by chunk.
    await ctx.watchdog.engine('copying the checkout into the build.sh container', (progress) => {
      const tar = withProgress(packDirectory(ctx.checkoutDir!, createContextFilter(undefined), 'project'), progress);
      return container.putArchive(tar, { path: '/', abortSignal: ctx.signal } as object);
    });
    const code = await runAttached(container, ctx.out.stdout, ctx.out.stderr, ctx.signal, { watchdog: ctx.watchdog, doing: 'running build.sh' }, () => {
      ctx.buildStarted();
      rememberBuilderImage(perEngine(ctx.config, ctx.request.serviceId), image);
      // The test container's network namespace is made while build.sh runs, once the builder
      // runs: started beside it, it slowed the builder's own start.
      if (ctx.metadata!.testEntrypoint) ctx.testNetwork ??= takeSpare(ctx, image) ?? networkAhead(ctx, image);
    });
    // Its namespace is not needed any more: it goes while the image builds.
    removeLater(ctx, holder);
    boundCaches(ctx, caches);
    if (code !== 0) throw errors.buildScriptFailed(code);
    ctx.builder = container;
  },
};
