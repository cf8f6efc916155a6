import { lstat, readFile } from 'node:fs/promises';
import path from 'node:path';
import { errors } from '../../errors.js';
import { createContextFilter } from '../../context/filter.js';
import { appendLabels } from '../../context/labels.js';
import { packDirectory, readSingleFile, repackArchive, type Rewrite } from '../../context/tar.js';
import { EngineStreamError, followStream, statusOf } from '../../docker/engine.js';
import type { BuildContext, Step } from '../context.js';

// Engine chatter that tells the user nothing about their build.
const NOISE = [/^ ---> Running in [0-9a-f]+$/, /^Removing intermediate container [0-9a-f]+$/, /^ ---> [0-9a-f]{12}$/];

export const imageStep: Step = {
  name: 'image',
  describe: ({ request }) => `docker build of ${request.image}:${request.tags.join(', :')}`,
  async run(ctx) {
    const { request } = ctx;
    const labels = {
      'org.opencontainers.image.revision': ctx.commit!,
      'org.opencontainers.image.source': request.repo.displayUrl,
      'org.opencontainers.image.version': ctx.metadata!.version,
      'org.opencontainers.image.created': new Date().toISOString(),
    };
    // The builder's /project archive is requested with the two files: one round trip, not two.
    const [dockerfile, dockerignore, archive] = await Promise.all([
      contextFile(ctx, 'Dockerfile'),
      contextFile(ctx, '.dockerignore'),
      ctx.builder?.getArchive({ path: '/project', abortSignal: ctx.signal } as { path: string }),
    ]);
    if (dockerfile === undefined) throw errors.missingDockerfile(ctx.commit!.slice(0, 12));
    // One LABEL line in the Dockerfile where that is safe; the build parameter (a step per label) otherwise.
    const withLabels = dockerfile.regular ? appendLabels(dockerfile.text, labels) : undefined;
    const rewrite: Rewrite | undefined = withLabels === undefined ? undefined : { path: 'Dockerfile', apply: () => Buffer.from(withLabels) };
    const filter = createContextFilter(dockerignore?.text);
    const context = archive ? repackArchive(archive, 'project', filter, rewrite) : packDirectory(ctx.checkoutDir!, filter, '', rewrite);
    const stream = await ctx.docker.buildImage(context, {
      t: request.tags.map((tag) => `${request.image}:${tag}`),
      labels: withLabels === undefined ? labels : undefined,
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

/** A file of the build context (what build.sh left in /project, or the checkout), and whether it is a regular file. */
async function contextFile(ctx: BuildContext, name: string): Promise<{ text: string; regular: boolean } | undefined> {
  if (!ctx.builder) {
    const file = path.join(ctx.checkoutDir!, name);
    const regular = await lstat(file).then((s) => s.isFile(), () => false);
    return readFile(file, 'utf8').then((text) => ({ text, regular }), () => undefined);
  }
  return ctx.builder
    .getArchive({ path: `/project/${name}` })
    .then((tar) => readSingleFile(tar))
    .catch((err: unknown) => {
      if (statusOf(err) === 404) return undefined;
      throw err;
    });
}
