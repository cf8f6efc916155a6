import { constants } from 'node:fs';
import { lstat, open, unlink } from 'node:fs/promises';
import path from 'node:path';
import { errors } from '../model/errors.js';

/**
 * The most the server reads of any one file of a repository (Dockerfile, build.sh,
 * .dockerignore): real ones are a few KiB; the cap keeps `Dockerfile -> /dev/zero` or a
 * generated gigabyte out of the server's memory.
 */
export const REPO_FILE_MAX_BYTES = 1 << 20;

// O_NONBLOCK: if a FIFO replaces the file between lstat and open, the open returns at once instead of waiting for a writer.
const READ_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;
const WRITE_FLAGS = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW;

/** What a non-regular file is, in words for the error message. */
function kindOf(stat: { isSymbolicLink(): boolean; isDirectory(): boolean; isFIFO(): boolean; isSocket(): boolean; isBlockDevice(): boolean; isCharacterDevice(): boolean }): string {
  if (stat.isSymbolicLink()) return 'a symbolic link';
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a named pipe';
  if (stat.isSocket()) return 'a socket';
  if (stat.isBlockDevice() || stat.isCharacterDevice()) return 'a device node';
  return 'not a regular file';
}

/** lstat, or undefined when nothing is there. */
export async function lstatOrUndefined(file: string) {
  try {
    return await lstat(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

/**
 * Reads `name` at the top of a checkout, or undefined when there is none. Only a regular
 * file is read: a symbolic link (which could point anywhere on the host), a directory, a
 * FIFO or a device is refused with EREPOFILE, and so is a file over REPO_FILE_MAX_BYTES.
 * The lstat check and O_NOFOLLOW together leave no window for a link swapped in between,
 * and the fstat of the open descriptor confirms what was actually opened.
 */
export async function readRepoFile(dir: string, name: string, maxBytes = REPO_FILE_MAX_BYTES): Promise<string | undefined> {
  const file = path.join(dir, name);
  const stat = await lstatOrUndefined(file);
  if (!stat) return undefined;
  if (!stat.isFile()) throw errors.repoFile(name, kindOf(stat));
  if (stat.size > maxBytes) throw errors.repoFileTooLarge(name, maxBytes);
  let handle;
  try {
    handle = await open(file, READ_FLAGS);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw errors.repoFile(name, 'a symbolic link');
    if (code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile()) throw errors.repoFile(name, kindOf(opened));
    // One byte more than the cap tells a file that grew since the lstat from one that fits.
    const buffer = Buffer.alloc(Math.min(maxBytes + 1, opened.size + 1));
    let length = 0;
    while (length < buffer.length) {
      const { bytesRead } = await handle.read(buffer, length, buffer.length - length, length);
      if (bytesRead === 0) break;
      length += bytesRead;
    }
    if (length > maxBytes) throw errors.repoFileTooLarge(name, maxBytes);
    return buffer.subarray(0, length).toString('utf8');
  } finally {
    await handle.close();
  }
}

/**
 * Writes `name` at the top of a checkout without following links: what the repository put
 * there must be a regular file (or nothing), it is unlinked, and the new file is created
 * with O_EXCL|O_NOFOLLOW, so neither a symbolic link nor a hard link to a host file is
 * ever written through. A symbolic link (`VERSION -> /etc/passwd`) is refused with EREPOFILE.
 */
export async function writeRepoFile(dir: string, name: string, content: string): Promise<void> {
  const file = path.join(dir, name);
  const stat = await lstatOrUndefined(file);
  if (stat && !stat.isFile()) throw errors.repoFile(name, kindOf(stat));
  if (stat) await unlink(file);
  let handle;
  try {
    handle = await open(file, WRITE_FLAGS, 0o644);
  } catch (err) {
    // Something appeared between the unlink and the create: only a racing writer could do that.
    if ((err as NodeJS.ErrnoException).code === 'EEXIST' || (err as NodeJS.ErrnoException).code === 'ELOOP') throw errors.repoFile(name, 'replaced while it was written');
    throw err;
  }
  try {
    await handle.writeFile(content);
  } finally {
    await handle.close();
  }
}
