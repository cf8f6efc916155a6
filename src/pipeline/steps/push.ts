import { errors } from '../../model/errors.js';
import { EngineStreamError, engineMessage, followStream } from '../../docker/engine.js';
import { authConfig, type Step } from '../context.js';
import { forgetLogin } from '../../docker/login-cache.js';

/** Pushes every tag; the engine's byte-by-byte progress is condensed to a line per layer sent. */
export const pushStep: Step = {
  name: 'push',
  describe: ({ request }) => `${request.tags.length} tag${request.tags.length === 1 ? '' : 's'} to ${request.registry.server}`,
  async run(ctx) {
    const { request } = ctx;
    for (const tag of request.tags) {
      const ref = `${request.image}:${tag}`;
      let sent = 0;
      let present = 0;
      try {
        await ctx.watchdog.guard({ source: 'the engine', doing: `pushing ${ref}`, hint: `check the registry ${request.registry.server} and the engine with docker info` }, async (progress) => {
          const stream = await ctx.docker.getImage(request.image).push({ tag, authconfig: authConfig(ctx), abortSignal: ctx.signal } as object);
          stream.on('data', progress);
          await followStream(stream, (event) => {
            if (event.status === 'Pushed') {
              sent++;
              ctx.out.line(`  layer ${event.id} pushed`);
            } else if (event.status === 'Layer already exists' || event.status?.startsWith('Mounted from')) {
              present++;
            }
            const digest = typeof event.aux === 'object' ? event.aux.Digest : undefined;
            if (typeof digest === 'string') ctx.digest = digest;
          });
        });
      } catch (err) {
        if (ctx.signal.aborted) throw err;
        // The next build checks the login again rather than trusting a recent check.
        if (request.registry.login) forgetLogin({ registry: request.registry.server, ...request.registry.login, engine: ctx.config.engineName });
        throw errors.push(ref, err instanceof EngineStreamError ? err.message : engineMessage(err), request.registry.login !== undefined);
      }
      ctx.out.line(`pushed ${ref} (${sent} layer${sent === 1 ? '' : 's'} sent, ${present} already there) ${ctx.digest ?? ''}`.trimEnd());
    }
  },
};
