import { createHash } from 'node:crypto';

/**
 * A service id in a form docker's image and volume names accept (lowercase, single separators),
 * followed by a hash of the id itself: `Api` and `api` are two services and never share a name.
 */
export function serviceSlug(serviceId: string): string {
  const readable = serviceId.toLowerCase().replace(/[._-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64) || 'service';
  return `${readable}-${createHash('sha256').update(serviceId).digest('hex').slice(0, 8)}`;
}
