import { randomBytes } from 'node:crypto';

/** Sortable by creation time (base-36 milliseconds), unguessable enough to not collide. */
export function newBuildId(): string {
  return `${Date.now().toString(36).padStart(9, '0')}${randomBytes(4).toString('hex')}`;
}

export const BUILD_ID = /^[0-9a-z]{9}[0-9a-f]{8}$/;
