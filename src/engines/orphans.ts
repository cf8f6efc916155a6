import os from 'node:os';
import type Docker from 'dockerode';
import { LABELS } from '../docker/containers.js';
import { removeContainer } from '../docker/removals.js';
import type { ServerLog } from '../log/server-log.js';
import { isAlive } from '../vcs/orphan-keys.js';
import { SPARE_ROLE } from '../pipeline/spare-networks.js';

/**
 * Removes the containers of builds whose process died (a server killed with -9, a container
 * restarted), at start and whenever the engine comes back. Only containers created on this host
 * are judged: another host sharing the engine may have builds running. Of this very process,
 * the containers of builds still running (`running`) are theirs to remove; the others are
 * leftovers of an outage.
 */
export async function removeOrphans(docker: Docker, log: ServerLog, running: ReadonlySet<string> = new Set()): Promise<number> {
  // Spare namespaces (src/pipeline/spare-networks.ts) belong to no build: their process removes its own.
  const spares = await docker.listContainers({ all: true, filters: { label: [`${LABELS.role}=${SPARE_ROLE}`] } });
  const containers = [...await docker.listContainers({ all: true, filters: { label: [LABELS.build] } }), ...spares];
  let removed = 0;
  for (const info of containers) {
    const pid = Number(info.Labels[LABELS.pid]);
    const build = info.Labels[LABELS.build];
    if (info.Labels[LABELS.host] !== os.hostname() || !pid) continue;
    if (pid === process.pid ? build === undefined || running.has(build) : isAlive(pid)) continue;
    try {
      await removeContainer(docker.getContainer(info.Id));
    } catch (err) {
      log('orphan-remove-failed', { container: info.Id.slice(0, 12), build, error: (err as Error).message });
      continue;
    }
    log('orphan-removed', { container: info.Id.slice(0, 12), build, service: info.Labels[LABELS.service] });
    removed++;
  }
  return removed;
}
