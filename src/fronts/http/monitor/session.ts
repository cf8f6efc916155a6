import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';
import type { Access, Tokens } from '../auth.js';

export const COOKIE = 'buildbot_session';
/** How long a sign-in lasts. A restart of the server signs everyone out too (the key is per process). */
export const SESSION_SECONDS = 12 * 60 * 60;

export interface Session {
  access: Access;
  /** Per sign-in; names it for sign-out and derives its CSRF token. */
  nonce: string;
  expires: number;
  /** The form token that proves a POST came from one of our pages. */
  csrf: string;
  /** The API token it was signed in with, by its id (Tokens.identify): per-token limits count it. */
  tokenId: string;
}

/** Live sign-ins kept at most; past it the oldest is signed out (never the other way round). */
export const MAX_SESSIONS = 10_000;

/**
 * Sign-in for the web monitor. The cookie holds no token: it is `v1.<access>.<expires>.<nonce>.<mac>`,
 * signed with a key that lives in this process only, so a stolen cookie is worth a read or
 * full session until it expires, is signed out or the server restarts, never the API token itself.
 *
 * A cookie is valid only while its nonce is in the server's record of live sessions: sign-out
 * deletes the record, and a deleted nonce never comes back (nonces are random, 128 bits), so a
 * signed-out cookie stays dead however many sessions come and go. (A list of signed-out nonces
 * had to forget the oldest once full, which revived them.) The record is bounded by MAX_SESSIONS
 * and by the sign-in rate per address (SignInLimit); when it is full the oldest session ends.
 * The CSRF token is derived from the session (HMAC); SameSite=Strict already keeps other sites'
 * requests from carrying the cookie, and POSTs also check Origin.
 */
export class Sessions {
  private readonly key = randomBytes(32);
  /** nonce -> expiry (seconds) and token id, oldest first: every session lasts SESSION_SECONDS, so Map order is expiry order. */
  private readonly live = new Map<string, { expires: number; tokenId: string }>();

  constructor(private readonly tokens: Tokens, private readonly maxSessions = MAX_SESSIONS) {}

  get configured(): boolean {
    return this.tokens.configured;
  }

  /** The access a token grants ('none' for a wrong one), checked by the API's own constant-time comparison. */
  checkToken(token: string): { access: Access; id: string } | undefined {
    return this.tokens.identify({ headers: { authorization: `Bearer ${token}` } } as IncomingMessage);
  }

  create(access: Access, tokenId = ''): { session: Session; cookie: string } {
    const nonce = randomBytes(16).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const expires = now + SESSION_SECONDS;
    for (const [oldest, record] of this.live) {
      if (record.expires >= now && this.live.size < this.maxSessions) break;
      this.live.delete(oldest);
    }
    this.live.set(nonce, { expires, tokenId });
    const payload = `v1.${access}.${expires}.${nonce}`;
    return { session: { access, nonce, expires, csrf: this.csrfFor(nonce), tokenId }, cookie: `${payload}.${this.mac(payload)}` };
  }

  /** The session a request carries: its cookie, or an API token in Authorization (for scripts and curl). */
  fromRequest(req: IncomingMessage): { session: Session; via: 'cookie' | 'bearer' } | undefined {
    if (req.headers.authorization !== undefined) {
      const token = this.tokens.identify(req);
      if (!token) return undefined;
      return { session: { access: token.access, nonce: '', expires: 0, csrf: '', tokenId: token.id }, via: 'bearer' };
    }
    const value = readCookie(req, COOKIE);
    if (!value) return undefined;
    const session = this.verify(value);
    return session && { session, via: 'cookie' };
  }

  signOut(session: Session): void {
    this.live.delete(session.nonce);
  }

  /** Live sign-ins (for tests and the bound above). */
  get size(): number {
    return this.live.size;
  }

  /** Whether a form's CSRF token is the one of this session. */
  csrfMatches(session: Session, given: string | undefined): boolean {
    if (!session.csrf || typeof given !== 'string') return false;
    return safeEqual(session.csrf, given);
  }

  private verify(value: string): Session | undefined {
    if (value.length > 200) return undefined;
    const parts = value.split('.');
    if (parts.length !== 5 || parts[0] !== 'v1') return undefined;
    const [, access, expiresText, nonce, mac] = parts;
    if (!safeEqual(this.mac(parts.slice(0, 4).join('.')), mac)) return undefined;
    const expires = Number(expiresText);
    if ((access !== 'read' && access !== 'full') || !Number.isSafeInteger(expires) || expires < Date.now() / 1000) return undefined;
    const record = this.live.get(nonce);
    if (record === undefined || record.expires !== expires) return undefined;
    return { access, nonce, expires, csrf: this.csrfFor(nonce), tokenId: record.tokenId };
  }

  private csrfFor(nonce: string): string {
    return this.mac(`csrf.${nonce}`);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }
}

/** The Set-Cookie value for a session (or to delete it: maxAge 0). */
export function sessionCookie(value: string, maxAge: number, secure: boolean): string {
  return `${COOKIE}=${value}; Path=/; Max-Age=${maxAge}; HttpOnly; SameSite=Strict${secure ? '; Secure' : ''}`;
}

function readCookie(req: IncomingMessage, name: string): string | undefined {
  const header = req.headers.cookie;
  if (!header || header.length > 8192) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
