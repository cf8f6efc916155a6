import type { ServerLog } from '../log/server-log.js';
import type Docker from 'dockerode';
import type { Config } from './config.js';
import type { Watchdog } from '../docker/watchdog.js';
import type { BuildContainers } from '../docker/containers.js';
import type { UserOutput } from '../io/output.js';
import type { BuildRequest } from '../request/types.js';
import type { BuildTrace } from '../log/trace.js';

/** What a build tells whoever runs it (the build service), beside its output. */
export interface BuildHooks {
  /** A step starts, or ends (with its duration and whether it succeeded); in order with the output. */
  step?(name: string, phase: 'start' | 'end', info: { durationMs?: number; ok?: boolean }): void;
  /** The checkout resolved the revision to this commit; the later steps have not run yet. */
  checkedOut?(commit: string): void;
  /** Once the build's output is all written: what the build ended with. */
  finished?(outcome: BuildOutcome): void;
}

export interface BuildOutcome {
  exitCode: number;
  commit?: string;
  digest?: string;
  /** The catalogue error the build ended with (already redacted), if any. */
  error?: { code: string; message: string };
}

/** What the steps of one build share. Steps fill in the later fields in order. */
export interface BuildContext {
  readonly request: BuildRequest;
  readonly config: Config;
  readonly docker: Docker;
  readonly out: UserOutput;
  /** Aborted when the caller goes, at the time limit, or on a stall; its reason says which. */
  readonly signal: AbortSignal;
  /** Every engine, git, hg and registry operation runs under it (src/docker/watchdog.ts). */
  readonly watchdog: Watchdog;
  readonly log: ServerLog;
  readonly buildId: string;
  readonly startedAt: number;
  readonly containers: BuildContainers;
  /** Run in reverse order when the build ends, however it ends. */
  readonly cleanups: Array<() => Promise<void>>;
  /**
   * Work a step started for a later step to await (see inBackground). The build's end waits for
   * all of it before its cleanup, so nothing it creates outlives the build.
   */
  readonly background: Array<Promise<unknown>>;
  /** Network namespaces made ahead for the builder and the test container (src/docker/netns.ts), if any. */
  builderNetwork?: Promise<Docker.Container | undefined>;
  testNetwork?: Promise<Docker.Container | undefined>;
  /** The build's start is over (its builder runs, or its image step begins): background engine work may run (src/docker/background.ts). */
  readonly buildStarted: () => void;
  /** Set when the build is traced (BUILDBOT_TRACE=1). */
  readonly trace?: BuildTrace;
  readonly hooks?: BuildHooks;

  checkoutDir?: string;
  commit?: string;
  metadata?: {
    version: string;
    /** The image build.sh runs in: named by build.sh, or made by the builder step. */
    builderImage?: string;
    /** build.sh's #build_inside_dockerfile: the builder step makes builderImage from it. */
    builderDockerfile?: string;
    /** builderImage was made on this engine by the builder step: nothing to pull. */
    builderBuilt?: boolean;
    /** build.sh's #build_cache paths (src/pipeline/build-cache.ts). */
    buildCaches?: string[];
    testEntrypoint?: string[];
    imageFrom?: string;
  };
  /** The builder container whose /project is the build context, when build.sh ran. */
  builder?: Docker.Container;
  /** Settles once the builder is removed (the test step starts that). */
  builderRemoved?: Promise<void>;
  /** Drops the service's caches over the size bound (src/pipeline/build-cache.ts); once, before the result line. */
  boundCaches?: () => Promise<void>;
  imageId?: string;
  digest?: string;
}

export interface Step {
  name: string;
  /** The header's text after the step name. */
  describe(ctx: BuildContext): string;
  run(ctx: BuildContext): Promise<void>;
  /** A step with nothing to do for this build (no header, no record), e.g. the builder step without its header. */
  skip?(ctx: BuildContext): boolean;
}

/**
 * Starts work now that a later step awaits. Its failure surfaces in the step that awaits it, as
 * that step's error; the build's cleanup waits for it to settle first, whatever the outcome.
 */
export function inBackground<T>(ctx: BuildContext, work: () => Promise<T>): Promise<T> {
  const started = work();
  ctx.background.push(started.catch(() => undefined));
  return started;
}

/** Removes containers of the build in the background while later steps run; settles once they are gone (or failed to go). */
export function removeLater(ctx: BuildContext, ...containers: Array<Docker.Container | undefined>): Promise<void> {
  return inBackground(ctx, async () => {
    await Promise.all(containers.map(async (container) => {
      if (!container) return;
      try {
        await ctx.watchdog.engine('removing a container of the build', () => ctx.containers.remove(container));
      } catch (err) {
        ctx.log('cleanup-failed', { build: ctx.buildId, error: ctx.out.redactor.redact((err as Error).message) });
      }
    }));
  });
}

/** Push and pull credentials in the engine's form. */
export function authConfig(ctx: BuildContext): Docker.AuthConfig | undefined {
  const { login, server } = ctx.request.registry;
  // The engine names Docker Hub by its old v1 address.
  const serveraddress = server === 'docker.io' ? 'https://index.docker.io/v1/' : server;
  return login ? { username: login.username, password: login.password, serveraddress } : undefined;
}
