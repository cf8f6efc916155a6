import os from 'node:os';
import type Docker from 'dockerode';
import { perEngine, type Config } from './config.js';
import { BuildContainers, LABELS } from '../docker/containers.js';
import { removeContainer } from '../docker/removals.js';
import { engineMessage } from '../docker/engine.js';
import { limitsHostConfig } from '../docker/limits.js';
import { startNetworkHolder } from '../docker/netns.js';
import { Watchdog } from '../docker/watchdog.js';
import { inBackground, type BuildContext } from './context.js';
import { engineBackground } from '../docker/background.js';
import type { ServerLog } from '../log/server-log.js';

/**
 * A network namespace made when a service's build has ended (from its second successful build in this
 * process on), for the builder of its next build.
 * A holder started with a build (src/pipeline/networks.ts) is up ~0.2 s later; a new revision
 * fetched through a shared SSH connection, or a rebuild, reaches build.sh sooner, and its builder
 * then made a namespace of its own on the build's path (~0.1-0.2 s more than joining one). A
 * spare made between builds is ready at once. Two are made: the builder's and the in-image test's.
 *
 * Made under networkAhead's rule: from the builder image the service's own last build ran, and
 * only taken by a build whose service last ran that same image. A spare is not a build's container
 * (no io.buildbot.build label; role "spare-network"): it belongs to the server, which removes it
 * when no build took it within config.spareNetworkSeconds, when the server stops, or, when its
 * process died, at the next start's orphan sweep. Two per service, for at most MAX_SPARES services.
 * A build that takes one owns it from then on and removes it with its other containers.
 */
export const SPARE_ROLE = 'spare-network';
const MAX_SPARES = 32;
// Making a holder takes a fraction of a second; an engine that does not answer this long gets no spare.
const MAKE_TIMEOUT_MS = 30_000;

interface Spare {
  image: string;
  holders: Array<Promise<Docker.Container | undefined>>;
  /** Made (or failed): until then a build leaves the spare alone and makes its own namespace. */
  ready: boolean;
  timer: NodeJS.Timeout;
}

// One for the builder, one for the in-image test: no namespace is then made while the build runs.
// In an A/B two made rebuilds and new revisions 0.77-0.91 of the time one took: the test's holder was
// made while the image step read /project and built, and slowed both.
const PER_SERVICE = 2;

const spares = new Map<string, Spare>();
let closed = false;

// Services this process has built, oldest first. Spares are made from a service's second successful
// build on: one built once may not come back, and ten new services at once made twenty spares no build
// took, whose making and removal slowed the other builds (BENCHMARKS.md, row 6: 9.74 s against 9.02 s).
const built = new Set<string>();
const MAX_REMEMBERED = 10_000;

function builtBefore(serviceId: string): boolean {
  const seen = built.delete(serviceId);
  built.add(serviceId);
  if (built.size > MAX_REMEMBERED) built.delete(built.values().next().value as string);
  return seen;
}

/** After a build of the service that ran `image`: makes a spare for its next build (in the background). */
export function keepSpare(docker: Docker, config: Config, serviceId: string, image: string, log: ServerLog): void {
  const key = perEngine(config, serviceId);
  const again = builtBefore(key);
  if (!again || closed || config.spareNetworkSeconds <= 0 || spares.has(key) || spares.size >= MAX_SPARES) return;
  const make = () => {
    const containers = new BuildContainers(docker, { [LABELS.service]: serviceId, [LABELS.host]: os.hostname(), [LABELS.pid]: String(process.pid) });
    // No build to fail: a silent engine just means no spare.
    const stop = new AbortController();
    const watchdog = new Watchdog(MAKE_TIMEOUT_MS, () => stop.abort(), (signal) => (docker.ping as (opts: object) => Promise<unknown>).call(docker, { abortSignal: signal }));
    return startNetworkHolder(containers, image, config.buildNetwork, limitsHostConfig(config.buildLimits), stop.signal, watchdog, SPARE_ROLE)
      .catch(async (err: unknown) => {
        log('spare-network-failed', { service: serviceId, error: engineMessage(err) });
        await containers.removeAll().catch(() => undefined);
        return undefined;
      });
  };
  // Made when no build is starting (src/docker/background.ts): back to back, the next build's start
  // is not slowed by it; that build makes its own namespace, the one after it takes this spare.
  const holders = Array.from({ length: PER_SERVICE }, () => engineBackground(docker).run(make).then((holder) => holder ?? undefined));
  const spare: Spare = {
    image,
    holders,
    ready: false,
    timer: setTimeout(() => {
      if (spares.get(key) !== spare) return;
      spares.delete(key);
      void Promise.all(spare.holders.map((holder) => discard(holder, log)));
    }, config.spareNetworkSeconds * 1000),
  };
  spare.timer.unref();
  void Promise.all(holders).then(() => (spare.ready = true));
  spares.set(key, spare);
}

/**
 * One of the service's spares, for this build's builder or its test, if there is one made from
 * `image` (the builder image its last build ran) and still running; the build removes it with its
 * containers.
 */
export function takeSpare(ctx: BuildContext, image: string | undefined): Promise<Docker.Container | undefined> | undefined {
  const key = perEngine(ctx.config, ctx.request.serviceId);
  const spare = spares.get(key);
  if (!spare) return undefined;
  if (spare.image !== image) {
    spares.delete(key);
    clearTimeout(spare.timer);
    void Promise.all(spare.holders.map((holder) => discard(holder, ctx.log)));
    return undefined;
  }
  if (!spare.ready) return undefined;
  const taken = spare.holders.shift()!;
  if (!spare.holders.length) {
    spares.delete(key);
    clearTimeout(spare.timer);
  }
  return inBackground(ctx, async () => {
    const holder = await taken;
    if (!holder) return undefined;
    ctx.containers.adopt(holder);
    // The engine may have restarted, or someone removed it: a dead holder has no namespace to join.
    const running = await holder.inspect({ abortSignal: ctx.signal } as object).then((info) => info.State.Running, () => false);
    return running ? holder : undefined;
  });
}

/** Removes every spare and makes no more (the server stops). */
export async function dropSpares(log: ServerLog): Promise<void> {
  closed = true;
  const all = [...spares.values()];
  spares.clear();
  for (const spare of all) clearTimeout(spare.timer);
  await Promise.all(all.flatMap((spare) => spare.holders.map((holder) => discard(holder, log))));
}

async function discard(holder: Promise<Docker.Container | undefined>, log: ServerLog): Promise<void> {
  const container = await holder;
  if (!container) return;
  try {
    await removeContainer(container);
  } catch (err) {
    // Its process's orphan sweep removes it at the next start.
    log('spare-network-failed', { container: container.id.slice(0, 12), error: engineMessage(err) });
  }
}
