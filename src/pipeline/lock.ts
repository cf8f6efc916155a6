import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import lockfile from 'proper-lockfile';

/** What a build that waits for another build of its service prints. */
export const serviceBusyMessage = (serviceId: string) => `another build of service ${serviceId} is running; waiting for it to finish`;

/**
 * One build of a service at a time: the clone cache is shared. A lock file (not an
 * in-memory queue) so a `buildbot.sh` run beside the server waits too. The holder
 * refreshes it; a lock whose holder died is taken over once it is stale.
 */
export async function acquireServiceLock(
  workDir: string,
  serviceId: string,
  signal: AbortSignal,
  onWait: () => void,
  onCompromised: (err: Error) => void,
): Promise<() => Promise<void>> {
  const dir = path.join(workDir, '.locks');
  await mkdir(dir, { recursive: true });
  const file = path.join(dir, serviceId);
  let told = false;
  for (;;) {
    try {
      return await lockfile.lock(file, { realpath: false, stale: 20_000, update: 5_000, onCompromised });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ELOCKED') throw err;
    }
    if (!told) {
      onWait();
      told = true;
    }
    await sleep(250, undefined, { signal });
  }
}
