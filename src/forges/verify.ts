import { createHash, createHmac, timingSafeEqual } from 'node:crypto';
import type { IncomingHttpHeaders } from 'node:http';
import type { Forge } from './types.js';

const header = (headers: IncomingHttpHeaders, name: string): string | undefined => {
  const value = headers[name];
  return Array.isArray(value) ? value[0] : value;
};

/** The signature header each forge sends, for the messages. */
export const SIGNATURE_HEADER: Record<Forge, string> = {
  github: 'X-Hub-Signature-256',
  gitea: 'X-Gitea-Signature (or X-Forgejo-Signature)',
  gitlab: 'X-Gitlab-Token',
  bitbucket: 'X-Hub-Signature',
};

/**
 * Whether the raw body carries the forge's proof of the secret: an HMAC-SHA256 of the exact
 * bytes (GitHub and Bitbucket as "sha256=HEX", Gitea/Forgejo as bare hex), or GitLab's secret
 * itself. Compared in constant time over fixed-length digests, so the time taken says nothing
 * about how much of a signature was right. 'missing': no or an empty header.
 */
export function verifySignature(forge: Forge, headers: IncomingHttpHeaders, raw: Buffer, secret: string): 'ok' | 'missing' | 'wrong' {
  const early = verdictFromHeaders(forge, headers, secret);
  if (early) return early;
  const expected = createHmac('sha256', secret).update(raw).digest();
  return equalDigests(Buffer.from(signatureHex(forge, headers)!, 'hex'), expected) ? 'ok' : 'wrong';
}

/**
 * The verdict the headers give before the body is read: GitLab's token, or a missing or malformed
 * signature (so a sender without the secret gets no body buffered); undefined when the body decides.
 */
export function verdictFromHeaders(forge: Forge, headers: IncomingHttpHeaders, secret: string): 'ok' | 'missing' | 'wrong' | undefined {
  if (forge === 'gitlab') {
    const given = header(headers, 'x-gitlab-token');
    if (!given) return 'missing';
    return equalDigests(sha256(Buffer.from(given)), sha256(Buffer.from(secret))) ? 'ok' : 'wrong';
  }
  const hex = signatureHex(forge, headers);
  return hex === null ? 'missing' : hex === undefined ? 'wrong' : undefined;
}

/** The signature's 64 hex digits; null without one, undefined when it is malformed. */
function signatureHex(forge: Forge, headers: IncomingHttpHeaders): string | null | undefined {
  const value = forge === 'github'
    ? header(headers, 'x-hub-signature-256')
    : forge === 'bitbucket' ? header(headers, 'x-hub-signature') : header(headers, 'x-gitea-signature') || header(headers, 'x-forgejo-signature');
  if (!value) return null;
  const hex = forge === 'gitea' ? value.trim() : /^sha256=(.*)$/i.exec(value.trim())?.[1];
  return hex !== undefined && /^[0-9a-fA-F]{64}$/.test(hex) ? hex : undefined;
}

const sha256 = (data: Buffer) => createHash('sha256').update(data).digest();
const equalDigests = (a: Buffer, b: Buffer) => a.length === b.length && timingSafeEqual(a, b);

/** The delivery id a forge sends again on a redelivery. */
export function deliveryId(forge: Forge, headers: IncomingHttpHeaders): string | undefined {
  const value = forge === 'github' ? header(headers, 'x-github-delivery')
    : forge === 'gitea' ? header(headers, 'x-gitea-delivery') || header(headers, 'x-forgejo-delivery')
      : forge === 'gitlab' ? header(headers, 'idempotency-key') || header(headers, 'x-gitlab-event-uuid')
        : header(headers, 'x-request-uuid');
  return value && /^[\w.:{}-]{1,128}$/.test(value) ? value : undefined;
}

/** The event name a forge sends. */
export function eventName(forge: Forge, headers: IncomingHttpHeaders): string {
  const value = forge === 'github' ? header(headers, 'x-github-event')
    : forge === 'gitea' ? header(headers, 'x-gitea-event') || header(headers, 'x-forgejo-event')
      : forge === 'gitlab' ? header(headers, 'x-gitlab-event') : header(headers, 'x-event-key');
  return (value ?? '').slice(0, 64);
}
