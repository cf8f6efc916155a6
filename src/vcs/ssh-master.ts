import { spawn } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { chmod, lstat, mkdir, readdir, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import ssh2 from 'ssh2';

/**
 * Reuse of the git host's SSH connection (OpenSSH ControlMaster/ControlPersist): the handshake
 * costs about a third of a second here, on every clone and fetch. A master is shared only by
 * builds that present the same deploy key (by its public key's fingerprint) and the same pinned
 * host key, to the same host, port and user (ssh's %C), and lives `persistSeconds` after its
 * last use. Sockets live in <work-dir>/.ssh-mux (0700), one 0700 directory per key and pin.
 */
export const muxRoot = (workDir: string) => path.join(workDir, '.ssh-mux');

// ssh binds "<ControlPath>.<16 random characters>" first and renames it; sun_path holds 107 bytes.
const SOCKET_PATH_MAX = 107 - 17;
// ssh's %C: 40 hex digits.
const CONNECTION_HASH = 40;

// Directory names are a keyed hash with a key that lives only in this process: short (a socket
// path has little room) yet not open to an offline search for a collision with another key's
// directory, and nothing derived from a deploy key outlasts the process.
const PROCESS_SALT = randomBytes(32);

/** What tells deploy keys apart: the public key when it can be read, else a keyed hash of the private key. */
export function keyIdentity(privateKey: string | undefined): string {
  if (!privateKey) return 'no-key';
  const parsed = ssh2.utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key && !(key instanceof Error)) return `public:${key.type}:${key.getPublicSSH().toString('base64')}`;
  return `private:${createHmac('sha256', PROCESS_SALT).update(privateKey).digest('hex')}`;
}

/**
 * The ssh options that share a connection, or none. A service's first contact with its git
 * host (no pinned host key yet) connects alone, so that its known_hosts gets the pin: a master
 * has only checked its own service's pin, and sharing is keyed by that pin's content.
 */
export async function sharingOptions(workDir: string, privateKey: string | undefined, knownHostsFile: string, persistSeconds: number): Promise<string[]> {
  if (persistSeconds <= 0) return [];
  const pins = await readFile(knownHostsFile, 'utf8').catch(() => '');
  if (!pins.trim()) return [];
  // 72 bits, keyed: a master is never found under another key's or another pin's name.
  const id = createHmac('sha256', PROCESS_SALT).update(keyIdentity(privateKey)).update('\0').update(pins).digest('base64url').slice(0, 12);
  const root = muxRoot(workDir);
  const dir = path.join(root, id);
  // ssh expands % and a leading ~ in ControlPath; a path it would change, or one too long for a
  // socket, means no sharing rather than a failed build.
  if (/[%~\s'"\\$`]/.test(dir) || Buffer.byteLength(dir) + 1 + CONNECTION_HASH > SOCKET_PATH_MAX) return [];
  await privateDir(root);
  await privateDir(dir);
  return ['-o', 'ControlMaster=auto', '-o', `ControlPath=${dir}/%C`, '-o', `ControlPersist=${persistSeconds}`];
}

async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { mode: 0o700 }).catch((err: NodeJS.ErrnoException) => {
    if (err.code !== 'EEXIST') throw err;
  });
  const stat = await lstat(dir);
  if (!stat.isDirectory()) throw new Error(`${dir} is not a directory`);
  if ((stat.mode & 0o777) !== 0o700) await chmod(dir, 0o700);
}

/**
 * Asks every master under the work dir to exit (`ssh -O exit`), then removes the directory:
 * at server shutdown, and at start for masters a previous server left. Each request is bounded.
 */
export async function closeSshMasters(workDir: string, env: Record<string, string>): Promise<number> {
  const root = muxRoot(workDir);
  const dirs = await readdir(root).catch(() => [] as string[]);
  const sockets: string[] = [];
  for (const dir of dirs) {
    for (const name of await readdir(path.join(root, dir)).catch(() => [] as string[])) sockets.push(path.join(root, dir, name));
  }
  await Promise.all(sockets.map((socket) => exitMaster(socket, env)));
  await rm(root, { recursive: true, force: true });
  return sockets.length;
}

function exitMaster(socket: string, env: Record<string, string>): Promise<void> {
  return new Promise((resolve) => {
    const child = spawn('ssh', ['-F', '/dev/null', '-o', `ControlPath=${socket}`, '-O', 'exit', 'buildbot-mux'], {
      env, stdio: 'ignore', timeout: 5000,
    });
    child.on('error', () => resolve());
    child.on('close', () => resolve());
  });
}
