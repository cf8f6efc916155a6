import dockerignore from '@balena/dockerignore';

/** Decides, for a path relative to the context root, whether it goes into the build context. */
export interface ContextFilter {
  includes(relPath: string): boolean;
  /** Whether a directory that is itself excluded may still hold included files ("!" patterns). */
  mayIncludeBelow(relDir: string): boolean;
}

/** The clone's own metadata is never context: it changes on every fetch and would defeat the layer cache. */
const VCS_DIRS = new Set(['.git', '.hg']);

/**
 * .dockerignore semantics as the docker CLI applies them (the daemon does not apply the file
 * to an uploaded tar): @balena/dockerignore is a port of moby's matcher. Like the CLI, the
 * Dockerfile and .dockerignore are sent even when excluded, since the daemon needs them.
 */
export function createContextFilter(dockerignoreText: string | undefined): ContextFilter {
  const patterns = (dockerignoreText ?? '').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  // The package's types declare an ES default export; at run time it is the CommonJS function on .default.
  const matcher = dockerignore.default().add(patterns);
  const hasExceptions = patterns.some((p) => p.startsWith('!'));
  return {
    includes(relPath) {
      if (relPath === 'Dockerfile' || relPath === '.dockerignore') return true;
      if (VCS_DIRS.has(relPath.split('/')[0])) return false;
      return !matcher.ignores(relPath);
    },
    mayIncludeBelow(relDir) {
      return hasExceptions && !VCS_DIRS.has(relDir.split('/')[0]);
    },
  };
}
