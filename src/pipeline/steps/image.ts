import { errors, isBuildError } from '../../model/errors.js';
import { createContextFilter } from '../../context/filter.js';
import { readRepoFile } from '../../context/repo-file.js';
import { ArchiveSources, LinkOutOfPart, linksWithin, packDirectory, readSingleFile, repackArchive, repackArchives, type ContextStream } from '../../context/tar.js';
import { contextNeeds } from '../../context/dockerfile-context.js';
import type { ContextFilter } from '../../context/filter.js';
import tar from 'tar-stream';
import { DEFAULT_DOCKERFILE } from '../../request/build-options.js';
import { statusOf } from '../../docker/engine.js';
import { buildOnEngine } from '../engine-build.js';
import type { BuildContext, Step } from '../context.js';

/**
 * Builds with BuildKit: against the classic builder it took 0.13 s instead of 0.35 s for a
 * small image here (no container per step; labels are metadata, not a step) and about
 * half the time for a 150 MB context. A .dockerignore that leaves out the Dockerfile sends
 * the build to the classic builder (see ContextFilter.dockerfileIgnored).
 */
export const imageStep: Step = {
  name: 'image',
  describe: ({ request }) => `docker build of ${request.image}:${request.tags.join(', :')}`,
  async run(ctx) {
    ctx.buildStarted();
    const { request } = ctx;
    const labels = {
      'org.opencontainers.image.revision': ctx.commit!,
      'org.opencontainers.image.source': request.repo.displayUrl,
      'org.opencontainers.image.version': ctx.metadata!.version,
      'org.opencontainers.image.created': new Date().toISOString(),
    };
    // .dockerignore first, then /project, never both at once: the engine locks the builder while an
    // archive streams, and /project waiting behind an unread .dockerignore hung builds (the rule
    // heads src/docker/containers.ts). It costs one round trip. A refused .dockerignore
    // (EDOCKERIGNORE, EREPOFILE) then leaves no archive open.
    const filter = createContextFilter(await ctx.watchdog.engine('reading .dockerignore from the build.sh container', () => dockerignoreOf(ctx)), request.build.dockerfile);
    // Only what the Dockerfile can read leaves the builder (or the checkout): a Dockerfile that
    // copies out/ costs what out/ holds, not the whole tree (issue 22).
    const needs = filter.dockerfileIgnored ? undefined : await ctx.watchdog.engine('reading the Dockerfile to see what of the context it reads', () => neededNames(ctx));
    if (filter.dockerfileIgnored) ctx.out.line('.dockerignore leaves out the Dockerfile: building with the classic builder, which keeps it out of the image');
    if (needs) {
      try {
        ctx.out.line(`context: ${[request.build.dockerfile, ...needs.names].join(', ')} (the Dockerfile and the paths its COPY and ADD lines name; the rest of the tree is not sent)`);
        ctx.imageId = await buildImage(ctx, labels, filter, needs);
      } catch (err) {
        if (!(err instanceof LinkOutOfPart)) throw err;
        // Rare (a link out of the named paths): the whole context, from the start.
        ctx.out.line(`context: ${err.message}: sending the whole context`);
        ctx.imageId = await buildImage(ctx, labels, filter);
      }
    } else {
      ctx.imageId = await buildImage(ctx, labels, filter);
    }
    if (!ctx.imageId) throw errors.imageBuild('the engine reported no image id');
  },
};

/** One docker build with the whole context, or with the top-level names `needs` only. */
async function buildImage(ctx: BuildContext, labels: Record<string, string>, filter: ContextFilter, needs?: Needs): Promise<string | undefined> {
  const { request } = ctx;
  const builder = ctx.builder;
  const sources = new ArchiveSources();
  let context: ContextStream;
  let archive: NodeJS.ReadableStream | undefined;
  if (builder && needs) {
    const open = (name: string) => async () => {
      try {
        return await ctx.watchdog.engine(`asking for /project/${name} of the build.sh container`, () =>
          builder.getArchive({ path: `/project/${name}`, abortSignal: ctx.signal } as { path: string }));
      } catch (err) {
        // Not there: the Dockerfile's own COPY then fails as it would with the whole context.
        if (statusOf(err) === 404) return undefined;
        throw err;
      }
    };
    // The Dockerfile as it was read (no second archive of it), unless a named path holds it anyway.
    const dockerfile = request.build.dockerfile;
    const own = needs.names.includes(dockerfile.split('/')[0]) ? [] : [async () => singleFileTar(dockerfile, needs.dockerfile)];
    context = repackArchives([...own, ...needs.names.map(open)], '', filter, sources, linksWithin([dockerfile, ...needs.names])).context;
    archive = sources as unknown as NodeJS.ReadableStream;
  } else if (builder) {
    archive = await ctx.watchdog.engine('asking for /project of the build.sh container', () =>
      builder.getArchive({ path: '/project', abortSignal: ctx.signal } as { path: string }));
    context = repackArchive(archive, 'project', filter);
  } else {
    const names = needs && [request.build.dockerfile.split('/')[0], ...needs.names];
    context = packDirectory(ctx.checkoutDir!, names ? onlyNames(filter, names) : filter, '', undefined, names && linksWithin(names));
  }
  try {
    return await buildOnEngine(ctx, {
      context,
      query: buildQuery(ctx, labels, filter.dockerfileIgnored),
      classic: filter.dockerfileIgnored,
      doing: `building ${request.image}`,
      source: archive,
      failed(err) {
        if (/failed to read dockerfile|cannot locate specified dockerfile/i.test(err.message)) {
          // The metadata step saw a Dockerfile in the checkout: only build.sh can have taken it away.
          if (request.build.dockerfile !== DEFAULT_DOCKERFILE) return errors.missingCustomDockerfile(request.build.dockerfile, ctx.commit!.slice(0, 12));
          return ctx.builder ? errors.dockerfileRemovedByBuild() : errors.missingDockerfile(ctx.commit!.slice(0, 12));
        }
        return errors.imageBuild(err.message);
      },
    });
  } finally {
    // However the build ended (a stall included), nothing more is read from the builder: an
    // archive left open holds its lock.
    (archive as { destroy?: () => void } | undefined)?.destroy?.();
  }
}

/**
 * The top-level names of the context the Dockerfile can read (src/context/dockerfile-context.ts),
 * or undefined when that is not certain: the whole context goes then. The Dockerfile is read
 * where the engine will read it (what build.sh left, or the checkout); a base image with ONBUILD
 * triggers, or one not on the engine yet (its triggers unknown), takes the whole context too.
 */
async function neededNames(ctx: BuildContext): Promise<Needs | undefined> {
  const name = ctx.request.build.dockerfile;
  let text: string | undefined;
  try {
    if (ctx.builder) {
      // /project itself must be the folder it was: a link build.sh put there is not followed.
      const head = await ctx.builder.infoArchive({ path: '/project', abortSignal: ctx.signal } as object) as NodeJS.ReadableStream & { headers?: Record<string, string> };
      (head as unknown as { resume?: () => void }).resume?.();
      const stat = JSON.parse(Buffer.from(head.headers?.['x-docker-container-path-stat'] ?? '', 'base64').toString() || '{}') as { mode?: number; linkTarget?: string };
      // Go's os.ModeDir.
      if (stat.linkTarget || !((stat.mode ?? 0) & 0x80000000)) return undefined;
      text = await ctx.builder.getArchive({ path: `/project/${name}`, abortSignal: ctx.signal } as { path: string })
        .then((tar) => readSingleFile(tar, name, 'what build.sh left in /project'));
    } else {
      text = await readRepoFile(ctx.checkoutDir!, name);
    }
  } catch (err) {
    // A missing or odd Dockerfile is the engine's to report, as before.
    if (statusOf(err) === 404 || isBuildError(err)) return undefined;
    throw err;
  }
  if (text === undefined) return undefined;
  const needs = contextNeeds(text, name);
  if ('all' in needs) return undefined;
  for (const image of needs.from) {
    const onBuild = await ctx.docker.getImage(image).inspect({ abortSignal: ctx.signal } as object)
      .then((info) => (info.Config?.OnBuild ?? []).length, (err: unknown) => {
        if (statusOf(err) === 404) return -1;
        throw err;
      });
    if (onBuild !== 0) return undefined;
  }
  return { names: needs.names, dockerfile: text };
}

/** What the image step sends when the Dockerfile's reads are known: the Dockerfile's text, and these top-level names. */
interface Needs {
  names: string[];
  dockerfile: string;
}

/** A tar of one file, for a context part the server already holds. */
function singleFileTar(name: string, text: string): NodeJS.ReadableStream {
  const pack = tar.pack();
  pack.entry({ name, mode: 0o644, uid: 0, gid: 0, mtime: new Date(0) }, text);
  pack.finalize();
  return pack as unknown as NodeJS.ReadableStream;
}

/** The filter, narrowed to paths under the given top-level names. */
function onlyNames(filter: ContextFilter, names: readonly string[]): ContextFilter {
  const top = (rel: string) => names.includes(rel.split('/')[0]);
  return {
    get dockerfileIgnored() {
      return filter.dockerfileIgnored;
    },
    includes: (rel) => top(rel) && filter.includes(rel),
    mayIncludeBelow: (rel) => top(rel) && filter.mayIncludeBelow(rel),
    get steps() {
      return filter.steps;
    },
  };
}

/** The .dockerignore of the build context (what build.sh left in /project, or the checkout), if any. */
async function dockerignoreOf(ctx: BuildContext): Promise<string | undefined> {
  if (!ctx.builder) return readRepoFile(ctx.checkoutDir!, '.dockerignore');
  return ctx.builder
    .getArchive({ path: '/project/.dockerignore', abortSignal: ctx.signal } as { path: string })
    .then((tar) => readSingleFile(tar, '.dockerignore', 'what build.sh left in /project'))
    .catch((err: unknown) => {
      if (statusOf(err) === 404) return undefined;
      throw err;
    });
}

/** The engine's build parameters for the request's build options. */
function buildQuery(ctx: BuildContext, labels: Record<string, string>, classic: boolean): Record<string, unknown> {
  const { request } = ctx;
  const { build } = request;
  return {
    t: request.tags.map((tag) => `${request.image}:${tag}`),
    labels,
    version: classic ? '1' : '2',
    // Without forcerm a failed classic build step leaves its container behind.
    rm: true,
    forcerm: true,
    dockerfile: build.dockerfile,
    // Inline cache metadata in every BuildKit image, so that a later --cache_from of it can reuse its layers.
    buildargs: { ...(classic ? {} : { BUILDKIT_INLINE_CACHE: '1' }), ...build.args },
    ...(build.target ? { target: build.target } : {}),
    ...(build.platform ? { platform: build.platform } : {}),
    ...(build.pull ? { pull: '1' } : {}),
    ...(build.noCache ? { nocache: 'true' } : {}),
    ...(build.cacheFrom.length ? { cachefrom: JSON.stringify(build.cacheFrom) } : {}),
  };
}
