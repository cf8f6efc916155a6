import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { errors } from '../../errors.js';
import { createContextFilter } from '../../context/filter.js';
import { packDirectory, readSingleFile, repackArchive, type TarStream } from '../../context/tar.js';
import { EngineStreamError, followStream, statusOf } from '../../docker/engine.js';
import type { BuildContext, Step } from '../context.js';

// Engine chatter that tells the user nothing about their build.
const NOISE = [/^ ---> Running in [0-9a-f]+$/, /^Removing intermediate container [0-9a-f]+$/, /^ ---> [0-9a-f]{12}$/];

export const imageStep: Step = {
  name: 'image',
  describe: ({ request }) => `docker build of ${request.image}:${request.tags.join(', :')}`,
  async run(ctx) {
    const { request } = ctx;
    const context = await buildContext(ctx);
    const stream = await ctx.docker.buildImage(context, {
      t: request.tags.map((tag) => `${request.image}:${tag}`),
      labels: {
        'org.opencontainers.image.revision': ctx.commit!,
        'org.opencontainers.image.source': request.repo.displayUrl,
        'org.opencontainers.image.version': ctx.metadata!.version,
        'org.opencontainers.image.created': new Date().toISOString(),
      },
      rm: true,
      // Without forcerm a failed step leaves its container behind.
      forcerm: true,
      abortSignal: ctx.signal,
    } as object);
    let pending = '';
    const printLines = (text: string) => {
      pending += text;
      const lines = pending.split('\n');
      pending = lines.pop()!;
      for (const line of lines) if (!NOISE.some((re) => re.test(line))) ctx.out.line(line);
    };
    try {
      await followStream(stream, (event) => {
        if (event.stream) printLines(event.stream);
        else if (event.status) ctx.out.line(`${event.id ? `${event.id}: ` : ''}${event.status}`);
        const id = event.aux?.ID;
        if (typeof id === 'string') ctx.imageId = id;
      });
    } catch (err) {
      if (err instanceof EngineStreamError) throw errors.imageBuild(err.message);
      throw err;
    } finally {
      if (pending) printLines('\n');
    }
    if (!ctx.imageId) throw errors.imageBuild('the engine reported no image id');
  },
};

/** What build.sh left in /project, or the checkout itself; .dockerignore applied on this side. */
async function buildContext(ctx: BuildContext): Promise<TarStream> {
  if (ctx.builder) {
    const dockerignore = await ctx.builder
      .getArchive({ path: '/project/.dockerignore' })
      .then((tar) => readSingleFile(tar))
      .catch((err: unknown) => {
        if (statusOf(err) === 404) return undefined;
        throw err;
      });
    const archive = await ctx.builder.getArchive({ path: '/project', abortSignal: ctx.signal } as { path: string });
    return repackArchive(archive, 'project', createContextFilter(dockerignore));
  }
  const dockerignore = await readFile(path.join(ctx.checkoutDir!, '.dockerignore'), 'utf8').catch(() => undefined);
  return packDirectory(ctx.checkoutDir!, createContextFilter(dockerignore));
}
