import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import ssh2 from 'ssh2';
import { errors } from '../../model/errors.js';
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
    privateKey = generateEd25519KeyPair().private;
    // 'wx': two servers starting at once must not overwrite each other's key.
    try {
      writeFileSync(file, privateKey, { mode: 0o600, flag: 'wx' });
      created = true;
    } catch {
      privateKey = readFileSync(file, 'utf8');
    }
  }
  const key = parsedKey(privateKey);
  if (!key?.isPrivateKey()) throw errors.usage(`the host key ${file} is not a private key OpenSSH can use`);
  return { privateKey, fingerprint: fingerprint(key.getPublicSSH()), created };
}

function parsedKey(text: string): ssh2.ParsedKey | undefined {
  const parsed = ssh2.utils.parseKey(text);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  return key instanceof Error ? undefined : key;
}

/**
 * An ed25519 key pair that ssh2 can read back. ssh2 1.17's generator strips leading zero bytes
 * from the public key, so about one key in 256 comes out malformed (mscdex/ssh2#1513, open):
 * a fresh server then refused to start with its own new host key. Each retry fails with p = 1/256.
 */
export function generateEd25519KeyPair(): { private: string; public: string } {
  for (let attempt = 0; ; attempt++) {
    const pair = ssh2.utils.generateKeyPairSync('ed25519');
    if ((parsedKey(pair.private) && parsedKey(pair.public)) || attempt === 16) return pair;
  }
}
