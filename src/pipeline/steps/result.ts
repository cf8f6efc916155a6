import type { Step } from '../context.js';

/** The last stdout line: machine-readable facts about the pushed image, as the original printed them. */
export const resultStep: Step = {
  name: 'done',
  describe: ({ request }) => `${request.image} pushed as ${request.tags.join(', ')}`,
  async run(ctx) {
    // Said before the result line, which stays the last one.
    await ctx.boundCaches?.();
    const image = await ctx.docker.getImage(ctx.imageId!).inspect();
    const meta = {
      image_size: image.Size,
      image_from: ctx.metadata?.imageFrom ?? null,
      image: ctx.request.image,
      digest: ctx.digest ?? null,
      tags: ctx.request.tags,
      revision: ctx.commit,
      service_id: ctx.request.serviceId,
      duration_ms: Date.now() - ctx.startedAt,
    };
    ctx.out.line(`__build_result_meta ${JSON.stringify(meta)}`);
  },
};
