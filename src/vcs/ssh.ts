import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

export interface SshSetup {
  /** The ssh command line git and hg run: paths only, never key material. */
  command: string;
  knownHostsFile: string;
  dispose(): Promise<void>;
}

const quote = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;

/**
 * Writes the deploy key (0600, in a private temporary directory outside the work dir,
 * so no build context can ever contain it) and builds the ssh command for git and hg.
 * The known_hosts file is per service: the git host's key is pinned on the first build
 * (accept-new) and a changed key is refused afterwards.
 */
export async function prepareSsh(workDir: string, serviceId: string, privateKey: string | undefined): Promise<SshSetup> {
  const knownHostsDir = path.join(workDir, '.known_hosts');
  await mkdir(knownHostsDir, { recursive: true, mode: 0o700 });
  const knownHostsFile = path.join(knownHostsDir, serviceId);

  let keyDir: string | undefined;
  const identity: string[] = [];
  if (privateKey) {
    keyDir = await mkdtemp(path.join(os.tmpdir(), 'buildbot-key-'));
    const keyFile = path.join(keyDir, 'id');
    await writeFile(keyFile, privateKey, { mode: 0o600, flag: 'wx' });
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
  ].join(' ');
  return {
    command,
    knownHostsFile,
    dispose: async () => {
      if (keyDir) await rm(keyDir, { recursive: true, force: true });
    },
  };
}
