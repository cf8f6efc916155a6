import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import ssh2 from 'ssh2';
import { errors } from '../../model/errors.js';

export type PublicKey = ssh2.ParsedKey;

export const fingerprint = (publicSSH: Buffer) => `SHA256:${createHash('sha256').update(publicSSH).digest('base64').replace(/=+$/, '')}`;

/** Reads the one key allowed to start builds: a public key line, or @path to a file holding one. */
export function parseAuthorizedKey(value: string, source: string): PublicKey {
  let line = value.trim();
  if (line.startsWith('@')) {
    try {
      line = readFileSync(line.slice(1), 'utf8').trim();
    } catch (err) {
      throw errors.usage(`${source}: cannot read ${line.slice(1)}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  const lines = line.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  if (lines.length !== 1) {
    throw errors.usage(`${source} must hold exactly one public key line (ssh-ed25519 AAAA… comment), found ${lines.length}`);
  }
  const parsed = ssh2.utils.parseKey(lines[0]);
  const key = Array.isArray(parsed) ? parsed[0] : parsed;
  if (key instanceof Error || !key) throw errors.usage(`${source} is not a public key line like "ssh-ed25519 AAAA… comment"`);
  if (key.isPrivateKey()) throw errors.usage(`${source} is a private key; give the public key (the .pub file)`);
  return key;
}

/** Whether an offered key is exactly the authorized one: algorithm and key data, compared in constant time. */
export function isAuthorizedKey(allowed: PublicKey, algo: string, data: Buffer): boolean {
  const expected = allowed.getPublicSSH();
  return algo === allowed.type && data.length === expected.length && timingSafeEqual(data, expected);
}
