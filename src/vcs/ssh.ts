import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { sharingOptions } from './ssh-master.js';

/** Where deploy keys live during a build: in the work dir, beside (never inside) the clone caches. */
export const keysDir = (workDir: string) => path.join(workDir, '.keys');

export interface SshSetup {
  /** The ssh command line git and hg run: paths only, never key material. */
  command: string;
  knownHostsFile: string;
  dispose(): Promise<void>;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Writes the deploy key (0600, in a private directory under <work-dir>/.keys, which no build
 * context ever includes: only <work-dir>/cache/<service_id> is packed) and builds the ssh command
 * for git and hg. The directory name starts with the process id, so a server that finds the
 * key of a dead process at start can remove it.
 * The known_hosts file is per service: the git host's key is pinned on the first build
 * (accept-new) and a changed key is refused afterwards.
 */
export async function prepareSsh(workDir: string, serviceId: string, privateKey: string | undefined, persistSeconds = 0): Promise<SshSetup> {
  const knownHostsDir = path.join(workDir, '.known_hosts');
  await mkdir(knownHostsDir, { recursive: true, mode: 0o700 });
  const knownHostsFile = path.join(knownHostsDir, serviceId);

  let keyDir: string | undefined;
  const identity: string[] = [];
  if (privateKey) {
    await mkdir(keysDir(workDir), { recursive: true, mode: 0o700 });
    keyDir = await mkdtemp(path.join(keysDir(workDir), `${process.pid}-`));
    const keyFile = path.join(keyDir, 'id');
    try {
      await writeFile(keyFile, privateKey, { mode: 0o600, flag: 'wx' });
    } catch (err) {
      // A full work dir: the file was created but not written; nothing of it may stay behind.
      await rm(keyDir, { recursive: true, force: true });
      throw err;
    }
    identity.push('-i', quote(keyFile));
  } else {
    // Without a key of the request's own, the server's identities must not be offered.
    identity.push('-o', 'IdentityFile=none');
  }
  const command = [
    'ssh', '-F', '/dev/null', ...identity,
    '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-o', 'BatchMode=yes',
    '-o', `UserKnownHostsFile=${quote(knownHostsFile)}`, '-o', 'StrictHostKeyChecking=accept-new',
    '-o', 'ConnectTimeout=30', '-o', 'ServerAliveInterval=15', '-o', 'ServerAliveCountMax=4',
    ...(await sharingOptions(workDir, privateKey, knownHostsFile, persistSeconds)),
  ].join(' ');
  return {
    command,
    knownHostsFile,
    dispose: async () => {
      if (keyDir) await rm(keyDir, { recursive: true, force: true });
    },
  };
}
