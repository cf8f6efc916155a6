import { DockerignoreMatcher } from './dockerignore.js';

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
  /** Matching work done so far (NFA steps), so a caller looping over many paths can yield the thread now and then. */
  readonly steps: number;
}

/**
 * A clone's own metadata is never context, at any depth (a nested checkout that build.sh made
 * included): it changes on every fetch, would defeat the layer cache, and can hold credentials.
 */
const VCS_DIRS = new Set(['.git', '.hg']);
const inVcsDir = (relPath: string) => relPath.split('/').some((part) => VCS_DIRS.has(part));

/**
 * .dockerignore semantics as the docker CLI applies them (the daemon does not apply the file
 * to an uploaded tar): see dockerignore.ts. The Dockerfile is always sent, since the builder
 * reads it from the context; .dockerignore too when the classic builder needs it to leave the
 * Dockerfile out. A .dockerignore docker would reject, or one too costly to match, ends the
 * build with EDOCKERIGNORE.
 */
export function createContextFilter(dockerignoreText: string | undefined, dockerfile = 'Dockerfile'): ContextFilter {
  const matcher = DockerignoreMatcher.parse(dockerignoreText ?? '');
  const dockerfileIgnored = matcher.excludes(dockerfile);
  return {
    dockerfileIgnored,
    includes(relPath) {
      if (relPath === dockerfile || (relPath === '.dockerignore' && dockerfileIgnored)) return true;
      if (inVcsDir(relPath)) return false;
      return !matcher.excludes(relPath);
    },
    mayIncludeBelow(relDir) {
      return !inVcsDir(relDir) && matcher.mayIncludeBelow(relDir);
    },
    get steps() {
      return matcher.budget.steps;
    },
  };
}
