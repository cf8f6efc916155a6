import dockerignore from '@balena/dockerignore';

/** Decides, for a path relative to the context root, whether it goes into the build context. */
export interface ContextFilter {
  includes(relPath: string): boolean;
  /**
   * Whether .dockerignore leaves out the Dockerfile. BuildKit reads the Dockerfile from an
   * uploaded context and cannot keep it out of `COPY .`; the classic builder removes it (and
   * .dockerignore, if listed) after reading it, as docker does, so such a build goes to it.
   */
  readonly dockerfileIgnored: boolean;
  /** Whether a directory that is itself excluded may still hold included files ("!" patterns). */
  mayIncludeBelow(relDir: string): boolean;
}

/** The clone's own metadata is never context: it changes on every fetch and would defeat the layer cache. */
const VCS_DIRS = new Set(['.git', '.hg']);

/**
 * .dockerignore semantics as the docker CLI applies them (the daemon does not apply the file
 * to an uploaded tar): @balena/dockerignore is a port of moby's matcher. The Dockerfile is
 * always sent, since the builder reads it from the context; .dockerignore too when the
 * classic builder needs it to leave the Dockerfile out.
 */
export function createContextFilter(dockerignoreText: string | undefined): ContextFilter {
  const patterns = (dockerignoreText ?? '').split(/\r?\n/).map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  // The package's types declare an ES default export; at run time it is the CommonJS function on .default.
  const matcher = dockerignore.default().add(patterns);
  const hasExceptions = patterns.some((p) => p.startsWith('!'));
  const dockerfileIgnored = matcher.ignores('Dockerfile');
  return {
    dockerfileIgnored,
    includes(relPath) {
      if (relPath === 'Dockerfile' || (relPath === '.dockerignore' && dockerfileIgnored)) return true;
      if (VCS_DIRS.has(relPath.split('/')[0])) return false;
      return !matcher.ignores(relPath);
    },
    mayIncludeBelow(relDir) {
      return hasExceptions && !VCS_DIRS.has(relDir.split('/')[0]);
    },
  };
}
