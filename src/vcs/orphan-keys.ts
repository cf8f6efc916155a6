import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import type { ServerLog } from '../log/server-log.js';
import { keysDir } from './ssh.js';

/** Whether a process of this host still runs (EPERM: it does, as another user). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Deploy keys written by a process that died before it could remove them. */
export async function removeOrphanKeys(workDir: string, log: ServerLog): Promise<number> {
  const entries = await readdir(keysDir(workDir)).catch(() => [] as string[]);
  let removed = 0;
  for (const entry of entries) {
    const pid = Number(entry.split('-')[0]);
    if (pid && pid !== process.pid && isAlive(pid)) continue;
    await rm(path.join(keysDir(workDir), entry), { recursive: true, force: true });
    log('orphan-key-removed', { dir: entry });
    removed++;
  }
  return removed;
}

