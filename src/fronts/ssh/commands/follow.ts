import type { BuildIO } from '../../../io/output.js';
import type { Build } from '../../../service/build.js';
import { followAsText } from '../../../service/text-front.js';
import type { ServerServices } from './types.js';

/**
 * Streams a submitted build to the SSH channel as text and returns its exit code; closing the
 * connection cancels the build.
 */
export async function followOverSsh(build: Build, io: BuildIO, signal: AbortSignal, services: ServerServices): Promise<number> {
  const cancel = () => services.builds.cancel(build.id, 'the SSH connection closed');
  if (signal.aborted) cancel();
  signal.addEventListener('abort', cancel, { once: true });
  try {
    return await followAsText(build, io, services.builds.maxBuilds);
  } finally {
    signal.removeEventListener('abort', cancel);
  }
}
