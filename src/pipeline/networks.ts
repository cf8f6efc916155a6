import type Docker from 'dockerode';
import { engineMessage } from '../docker/engine.js';
import { limitsHostConfig } from '../docker/limits.js';
import { startNetworkHolder } from '../docker/netns.js';
import { inBackground, type BuildContext } from './context.js';
import { perEngine } from './config.js';

// Per service, the builder image its last build ran: on the engine, with the /bin/sh a holder
// needs, and chosen by that service's own repository. Never another service's: the holder's
// shell runs in the namespace the build then uses, so it must be code the build already trusts.
const lastBuilder = new Map<string, string>();
const MAX_SERVICES = 1000;

/** The builder image the service's last build in this process ran on the engine (key: perEngine), if any. */
export const lastBuilderImage = (serviceId: string): string | undefined => lastBuilder.get(serviceId);

/** Remembers the builder image a build of the service just ran. */
export function rememberBuilderImage(serviceId: string, image: string): void {
  lastBuilder.delete(serviceId);
  if (lastBuilder.size >= MAX_SERVICES) lastBuilder.delete(lastBuilder.keys().next().value!);
  lastBuilder.set(serviceId, image);
}

/**
 * Starts a network holder (src/docker/netns.ts) in the background, from `image` or, when none
 * is given, the builder image the service's last build in this process ran (none yet: no
 * holder). A holder that cannot be made (the image was removed meanwhile) is logged, and the
 * container that wanted it makes its own namespace, as without holders.
 */
export function networkAhead(ctx: BuildContext, image = lastBuilderImage(perEngine(ctx.config, ctx.request.serviceId))): Promise<Docker.Container | undefined> | undefined {
  if (!image) return undefined;
  return inBackground(ctx, () => startNetworkHolder(ctx.containers, image, ctx.config.buildNetwork, limitsHostConfig(ctx.config.buildLimits), ctx.signal, ctx.watchdog)).catch((err: unknown) => {
    if (!ctx.signal.aborted) ctx.log('network-holder-failed', { build: ctx.buildId, error: ctx.out.redactor.redact(engineMessage(err)) });
    const key = perEngine(ctx.config, ctx.request.serviceId);
    if (lastBuilder.get(key) === image) lastBuilder.delete(key);
    return undefined;
  });
}
