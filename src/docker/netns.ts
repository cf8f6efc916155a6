import type Docker from 'dockerode';
import type { Watchdog } from './watchdog.js';
import type { BuildContainers } from './containers.js';

/**
 * A network namespace made ahead of time for a container the build starts later. Most of a
 * container's start is making its network namespace (here: ~0.19 s of a ~0.26 s start on
 * the default bridge, ~0.07 s when it joins a running namespace). A holder container (a shell
 * that waits on its stdin for ever) is started in the background, while other work runs; the
 * later container joins its namespace (NetworkMode container:<holder>) and starts at the
 * cheaper price. It sees the same network as its own namespace would have given it: the same
 * network (config.buildNetwork or the engine's default), a fresh namespace nobody else used.
 * One holder serves one container of one build, and goes with the build's other containers.
 */
export async function startNetworkHolder(containers: BuildContainers, image: string, network: string | undefined, limits: Docker.HostConfig, signal: AbortSignal, watchdog: Watchdog, role = 'network'): Promise<Docker.Container> {
  // In the background, but nothing waits unguarded: a silent engine fails the build as a stall
  // here too, not only later in the step that takes the holder (issue 9).
  const holder = await watchdog.engine('creating a network namespace ahead of a container', () => containers.create(role, {
    Image: image,
    Entrypoint: ['/bin/sh'],
    Cmd: [],
    OpenStdin: true,
    StdinOnce: false,
    // The build's limits too (no raw sockets in the namespace the build uses, a pids and memory cap).
    HostConfig: { ...limits, NetworkMode: network },
  }));
  await watchdog.engine('starting a network namespace ahead of a container', () => holder.start({ abortSignal: signal } as object));
  return holder;
}

/** The NetworkMode of a container that joins a holder's namespace, or the build's own network without one. */
export const joinNetwork = (holder: Docker.Container | undefined, network: string | undefined) => (holder ? `container:${holder.id}` : network);
