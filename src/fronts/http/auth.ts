import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export type Access = 'full' | 'read';

/**
 * Bearer tokens: full access (builds, cancel) or read only. Every configured token is
 * compared, each in constant time over its SHA-256 (equal lengths whatever was sent), so the
 * time taken says nothing about how much of a token was right, nor which one matched.
 */
export class Tokens {
  private readonly tokens: Array<{ digest: Buffer; access: Access }>;

  constructor(full: readonly string[], read: readonly string[]) {
    this.tokens = [
      ...full.map((t) => ({ digest: digest(t), access: 'full' as const })),
      ...read.map((t) => ({ digest: digest(t), access: 'read' as const })),
    ];
  }

  get configured(): boolean {
    return this.tokens.length > 0;
  }

  /** The access a request's Authorization header grants; 'none' without a valid token. */
  check(req: IncomingMessage): Access | 'none' {
    return this.identify(req)?.access ?? 'none';
  }

  /** The access and the token's id (its place in the configuration: never the token), for per-token limits. */
  identify(req: IncomingMessage): { access: Access; id: string } | undefined {
    const header = req.headers.authorization;
    const match = header === undefined ? null : /^Bearer +([\x21-\x7e]{1,1024}) *$/i.exec(header);
    if (!match) return undefined;
    const offered = digest(match[1]);
    let found: { access: Access; id: string } | undefined;
    this.tokens.forEach((token, i) => {
      if (timingSafeEqual(token.digest, offered) && found?.access !== 'full') found = { access: token.access, id: `token-${i}` };
    });
    return found;
  }
}

const digest = (token: string) => createHash('sha256').update(token).digest();
