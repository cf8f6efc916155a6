import { createHash } from 'node:crypto';
import path from 'node:path';
import { createContextFilter } from '../../context/filter.js';
import { readRepoFile } from '../../context/repo-file.js';
import { packDirectory } from '../../context/tar.js';
import { statusOf } from '../../docker/engine.js';
import { errors } from '../../model/errors.js';
import { buildOnEngine } from '../engine-build.js';
import { inBackground, type BuildContext, type Step } from '../context.js';
import { serviceSlug } from '../../model/service-slug.js';

/** Every builder image carries the service it was made for: its older ones are found and removed by it. */
export const BUILDER_OF_LABEL = 'io.buildbot.builder-of';
/** Builder images kept per service: the one in use and the one before it (a revert builds nothing). */
export const BUILDERS_KEPT = 2;
// Entries of the hashed context all get this time: git writes files with the time of the checkout.
const EPOCH = new Date(0);
// Bumped when what the hash covers changes, so an old builder is not taken for a new one.
const HASH_VERSION = 'buildbot-builder-1';

/** The image repository of a service's builders. */
export const builderRepository = (serviceId: string) => `buildbot-builder/${serviceSlug(serviceId)}`;

/**
 * Makes the image build.sh runs in from the Dockerfile build.sh's #build_inside_dockerfile line
 * names, with that Dockerfile's folder (and that folder's .dockerignore) as the context, by the
 * engine's BuildKit like the image step. The image is tagged with a hash of the context as it
 * would be sent (paths, modes, contents, links; not times), so an unchanged builder is found on
 * the engine and costs one lookup, no build. FROM gets the push login for the push registry
 * only, as in the image step. The build's time limit and stall watchdog hold throughout.
 */
export const builderStep: Step = {
  name: 'builder',
  skip: ({ metadata }) => !metadata?.builderDockerfile,
  describe: ({ metadata }) => `image for build.sh from ${metadata?.builderDockerfile}`,
  async run(ctx) {
    const file = ctx.metadata!.builderDockerfile!;
    const folder = path.posix.dirname(file);
    const dockerfile = path.posix.basename(file);
    const root = path.join(ctx.checkoutDir!, folder);
    // Read as every repository file is (a link is EREPOFILE naming it); the metadata step checked the folders.
    const ignore = await readRepoFile(ctx.checkoutDir!, folder === '.' ? '.dockerignore' : `${folder}/.dockerignore`);
    const pack = () => {
      const filter = createContextFilter(ignore, dockerfile);
      return { filter, context: packDirectory(root, filter, '', EPOCH) };
    };
    const hash = createHash('sha256').update(`${HASH_VERSION}\0${dockerfile}\0`);
    const hashed = pack().context;
    // The time limit holds here too: a large folder takes a while to read.
    for await (const chunk of hashed) {
      ctx.signal.throwIfAborted();
      hash.update(chunk as Buffer);
    }
    if (hashed.contextError) throw hashed.contextError;
    const repository = builderRepository(ctx.request.serviceId);
    const ref = `${repository}:${hash.digest('hex').slice(0, 32)}`;

    const present = await ctx.watchdog.engine(`looking up the builder image ${ref}`, () =>
      ctx.docker.getImage(ref).inspect({ abortSignal: ctx.signal } as object).then(() => true, (err: unknown) => {
        if (statusOf(err) === 404) return false;
        throw err;
      }));
    if (present) {
      ctx.out.line(`builder ${ref} is on the engine: ${file} and its folder are unchanged, nothing to build`);
    } else {
      const { filter, context } = pack();
      ctx.out.line(`building builder ${ref} from ${file} (context: ${folder === '.' ? 'the repository root' : `${folder}/`})`);
      if (filter.dockerfileIgnored) ctx.out.line('.dockerignore leaves out the Dockerfile: building with the classic builder, which keeps it out of the image');
      const id = await buildOnEngine(ctx, {
        context,
        classic: filter.dockerfileIgnored,
        doing: `building the builder image from ${file}`,
        query: {
          t: [ref],
          labels: { [BUILDER_OF_LABEL]: ctx.request.serviceId },
          version: filter.dockerfileIgnored ? '1' : '2',
          rm: true,
          forcerm: true,
          dockerfile,
        },
        failed: (err) => errors.builderBuild(file, err.message),
      });
      if (!id) throw errors.builderBuild(file, 'the engine reported no image id');
      removeOlderBuilders(ctx, repository, ref);
    }
    ctx.metadata!.builderImage = ref;
    ctx.metadata!.builderBuilt = true;
  },
};

/**
 * Keeps the service's newest BUILDERS_KEPT builder tags (`current` among them) and removes the
 * others, in the background while build.sh runs. One still in use (a spare namespace made from
 * it) stays until a later build's turn.
 */
function removeOlderBuilders(ctx: BuildContext, repository: string, current: string): void {
  void inBackground(ctx, async () => {
    try {
      const images = await ctx.watchdog.engine('listing older builder images', () =>
        ctx.docker.listImages({ filters: { label: [`${BUILDER_OF_LABEL}=${ctx.request.serviceId}`] }, abortSignal: ctx.signal } as object));
      const tags = images
        .flatMap((image) => (image.RepoTags ?? []).filter((tag) => tag.startsWith(`${repository}:`)).map((tag) => ({ tag, created: image.Created })))
        .filter(({ tag }) => tag !== current)
        .sort((a, b) => b.created - a.created || (a.tag < b.tag ? -1 : 1));
      for (const { tag } of tags.slice(BUILDERS_KEPT - 1)) {
        await ctx.watchdog.engine(`removing the older builder image ${tag}`, () =>
          ctx.docker.getImage(tag).remove({ abortSignal: ctx.signal } as object)).catch((err: unknown) => {
          if (statusOf(err) !== 404 && statusOf(err) !== 409) throw err;
        });
      }
    } catch (err) {
      if (!ctx.signal.aborted) ctx.log('builder-prune-failed', { build: ctx.buildId, error: ctx.out.redactor.redact((err as Error).message) });
    }
  });
}
