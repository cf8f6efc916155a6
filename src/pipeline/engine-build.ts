import { BUILDKIT_TRACE, BuildProgress, decodeStatus, startBuild, type SessionAnswers } from '../docker/buildkit.js';
import { EngineStreamError, followStream } from '../docker/engine.js';
import type { ContextStream } from '../context/tar.js';
import { engineServerAddress } from '../request/registry.js';
import type { BuildContext } from './context.js';

// The classic builder's chatter that tells the user nothing about their build.
const NOISE = [/^ ---> Running in [0-9a-f]+$/, /^Removing intermediate container [0-9a-f]+$/, /^ ---> [0-9a-f]{12}$/];
// The key of the build's plain text (the classic builder's output, "Successfully tagged …").
const CLASSIC_TEXT = 'text';

export interface EngineBuild {
  context: ContextStream;
  /** The engine's /build query (t, labels, version, dockerfile, …). */
  query: Record<string, unknown>;
  /** The classic builder (a .dockerignore that leaves out the Dockerfile), not BuildKit. */
  classic: boolean;
  /** For the watchdog's message: "building registry/api". */
  doing: string;
  /** Bytes the context is read from (the builder's /project), which count as progress too. */
  source?: NodeJS.ReadableStream;
  /** Turns the engine's failure (a failed step, a missing Dockerfile) into the catalogue's error. */
  failed(err: EngineStreamError): Error;
}

/**
 * Runs one `docker build` on the engine under the build's watchdog and signal, printing each
 * step and its output as the image step always has, and returns the id of the image built.
 * The image step and the builder step (an image made from the repository's builder Dockerfile)
 * both build this way, with the same registry answers: only the push registry gets the login.
 */
export async function buildOnEngine(ctx: BuildContext, build: EngineBuild): Promise<string | undefined> {
  const { context } = build;
  let imageId: string | undefined;
  let moved = () => {};
  build.source?.on('data', () => moved());
  // A context that stopped early (EDOCKERIGNORE, EHARDLINK) reaches the engine as a cut tar: its own error says more.
  const contextFailure = (err: unknown) => {
    (build.source as { destroy?: () => void } | undefined)?.destroy?.();
    throw context.contextError ?? err;
  };
  // A Dockerfile step that prints nothing for the whole stall timeout counts as a stall too: the
  // engine sends no event meanwhile, and cannot be told apart from one that hangs.
  await ctx.watchdog.engine(build.doing, async (p) => {
    moved = p;
    const stream = await startBuild(ctx.docker, context, build.query, { signal: ctx.signal, ...registryAnswers(ctx, build.classic) }).catch(contextFailure);
    stream.on('data', p);
    const progress = new BuildProgress((line) => {
      if (!NOISE.some((re) => re.test(line))) ctx.out.line(line);
    });
    try {
      await followStream(stream, (event) => {
        if (event.id === BUILDKIT_TRACE && typeof event.aux === 'string') progress.update(decodeStatus(event.aux));
        else if (event.stream) progress.text(CLASSIC_TEXT, Buffer.from(event.stream));
        else if (event.status) ctx.out.line(`${event.id ? `${event.id}: ` : ''}${event.status}`);
        const id = typeof event.aux === 'object' ? event.aux.ID : undefined;
        if (typeof id === 'string') imageId = id;
      });
    } catch (err) {
      if (context.contextError) throw context.contextError;
      if (!(err instanceof EngineStreamError)) throw err;
      throw build.failed(err);
    } finally {
      progress.flush();
    }
  });
  if (context.contextError) throw context.contextError;
  return imageId;
}

/**
 * Registry credentials for base images, cache sources and build secrets: only the push
 * registry gets the login, so a FROM line can never send it elsewhere. BuildKit asks over its
 * session, host by host; the classic builder takes a per-registry map up front.
 */
function registryAnswers(ctx: BuildContext, classic: boolean): { session?: SessionAnswers; registryConfig?: Record<string, object> } {
  const { server, login } = ctx.request.registry;
  if (classic) return login ? { registryConfig: { [engineServerAddress(server)]: { username: login.username, password: login.password } } } : {};
  const secrets = new Map(Object.entries(ctx.request.build.secrets).map(([id, value]) => [id, Buffer.from(value)]));
  return {
    session: {
      registry: server,
      login,
      secrets,
      onCredentialRequest: (host, answered) => ctx.log('buildkit-credentials', { build: ctx.buildId, host, answered }),
    },
  };
}
