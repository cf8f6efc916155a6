import { randomBytes } from 'node:crypto';
import { mkdir, readdir, rename } from 'node:fs/promises';
import path from 'node:path';
import { errors } from '../model/errors.js';
import { isServiceId } from '../request/validate.js';
import type { ServerLog } from '../log/server-log.js';
import { lstatOrUndefined } from '../context/repo-file.js';

/**
 * The clone caches live in a directory of their own, <work-dir>/cache/<service_id>, so that no
 * service id can name one of the server's own files: they used to sit directly in the work
 * dir, where "--service_id ssh_host_ed25519_key" was the host key's path (removed as a broken
 * clone, and a clone put in its place). Locks (.locks/<id>), pinned git host keys
 * (.known_hosts/<id>), deploy keys (.keys) and clones in progress (.tmp) sit in directories
 * whose names start with ".", which a service id cannot.
 */
export const CACHE_DIR = 'cache';

export const cloneCacheRoot = (workDir: string) => path.join(workDir, CACHE_DIR);
export const cloneCacheDir = (workDir: string, serviceId: string) => path.join(cloneCacheRoot(workDir), serviceId);

/** Creates the cache root; refuses one that is not a real directory (a link would send every clone elsewhere). */
export async function ensureCacheRoot(workDir: string): Promise<string> {
  const root = cloneCacheRoot(workDir);
  const stat = await lstatOrUndefined(root);
  if (!stat) await mkdir(root, { recursive: true, mode: 0o700 });
  else if (!stat.isDirectory()) {
    throw errors.workDir(`${root} is not a directory (a ${stat.isSymbolicLink() ? 'symbolic link' : 'file'}); it holds the clone caches: move it away`);
  }
  return root;
}

/** Whether dir is a real directory holding a real .git or .hg directory: a clone cache of the old layout. */
async function isOldClone(dir: string): Promise<boolean> {
  const stat = await lstatOrUndefined(dir);
  if (!stat?.isDirectory()) return false;
  for (const meta of ['.git', '.hg']) if ((await lstatOrUndefined(path.join(dir, meta)))?.isDirectory()) return true;
  return false;
}

/**
 * Moves <work-dir>/<name> into the cache directory when it is a clone cache of the old layout
 * and the new place is free. Anything else (the host key, a file, a link, a directory that is no
 * clone) is left exactly as it is. Returns whether it moved.
 */
export async function migrateCloneCache(workDir: string, name: string): Promise<boolean> {
  if (!isServiceId(name)) return false;
  const old = path.join(workDir, name);
  if (!(await isOldClone(old))) return false;
  if (name === CACHE_DIR) {
    // A service once called "cache" holds the new root's name: set it aside first.
    const aside = path.join(workDir, '.tmp', `migrate-${randomBytes(4).toString('hex')}`);
    await mkdir(path.dirname(aside), { recursive: true });
    await rename(old, aside);
    await ensureCacheRoot(workDir);
    await rename(aside, cloneCacheDir(workDir, name));
    return true;
  }
  const root = await ensureCacheRoot(workDir);
  const target = path.join(root, name);
  if (await lstatOrUndefined(target)) return false;
  try {
    await rename(old, target);
  } catch (err) {
    // Another process moved it first.
    if (['ENOENT', 'EEXIST', 'ENOTEMPTY'].includes((err as NodeJS.ErrnoException).code ?? '')) return false;
    throw err;
  }
  return true;
}

/** At start: moves every clone cache of the old layout (<work-dir>/<service_id>) into <work-dir>/cache. */
export async function migrateCloneCaches(workDir: string, log: ServerLog): Promise<number> {
  const entries = await readdir(workDir, { withFileTypes: true }).catch(() => []);
  let moved = 0;
  for (const entry of entries) {
    if (!entry.isDirectory()) continue;
    if (await migrateCloneCache(workDir, entry.name)) {
      log('clone-cache-migrated', { service: entry.name, to: cloneCacheDir(workDir, entry.name) });
      moved++;
    }
  }
  return moved;
}
