import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { errors } from '../errors.js';
import { fingerprint } from './authorized-key.js';

/**
 * The server's host key: generated on first start and reused after, so the clients'
 * known_hosts entries stay valid across restarts.
 */
export function loadOrCreateHostKey(file: string): { privateKey: string; fingerprint: string; created: boolean } {
  let privateKey: string;
  let created = false;
  try {
    privateKey = readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw errors.usage(`cannot read the host key ${file}: ${(err as Error).message}`);
    mkdirSync(path.dirname(file), { recursive: true, mode: 0o700 });
    privateKey = ssh2.utils.generateKeyPairSync('ed25519').private;
    // 'wx': two servers starting at once must not overwrite each other's key.
    try {
      writeFileSync(file, privateKey, { mode: 0o600, flag: 'wx' });
      created = true;
    } catch {
      privateKey = readFileSync(file, 'utf8');
    }
  }
  const parsed = ssh2.utils.parseKey(privateKey);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key instanceof Error || !key?.isPrivateKey()) throw errors.usage(`the host key ${file} is not a private key OpenSSH can use`);
  return { privateKey, fingerprint: fingerprint(key.getPublicSSH()), created };
}
