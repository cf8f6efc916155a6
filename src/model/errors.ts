/**
 * The catalogue of errors a build can end with. Every error carries a stable code,
 * a message that names what was wrong and what to do, and the exit code the caller sees.
 *
 * Exit codes: 2 when the request itself is wrong (flags, credentials, key, revision);
 * 1 for every other failure; a build.sh or test failure passes its own code through.
 */
export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;
export const EXIT_CANCELLED = 130;
/** A build past its time limit, as timeout(1) exits. */
export const EXIT_TIMEOUT = 124;
/** sysexits' EX_TEMPFAIL: nothing was wrong with the request; the same one later may work. */
export const EXIT_TEMPFAIL = 75;

export class BuildError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly exitCode: number = EXIT_FAILURE,
    options?: { cause?: unknown; field?: string },
  ) {
    super(message, options);
    this.name = 'BuildError';
    this.field = options?.field;
  }

  /**
   * The request field at fault, by its flag name without dashes (`repo`, `docker_login_cmd`),
   * so each front names it its own way: `--repo` on the command line, `repo` in JSON.
   */
  readonly field?: string;
}

/** A path for a message: long ones keep their start and end. */
const shortPath = (p: string) => (p.length > 200 ? `${p.slice(0, 100)}…${p.slice(-100)}` : p);

export const isBuildError = (err: unknown): err is BuildError => err instanceof BuildError;

export const errors = {
  usage: (problem: string) => new BuildError('EUSAGE', problem, EXIT_USAGE),
  invalidInput: (problem: string) => new BuildError('EINVALID', problem, EXIT_USAGE),
  /** Past a request size limit (src/request/limits.ts); the message quotes no value. */
  requestTooLarge: (problem: string, field?: string) =>
    new BuildError('ETOOLARGE', `${problem}; split the work into several builds`, EXIT_USAGE, field ? { field } : undefined),

  registryAuth: (registry: string, user: string, detail: string) =>
    new BuildError(
      'EREGISTRYAUTH',
      `registry ${registry} refused the login of user "${user}" (${detail}); check the username and password in --docker_login_cmd`,
      EXIT_USAGE,
      { field: 'docker_login_cmd' },
    ),
  registryUnreachable: (registry: string, detail: string) =>
    new BuildError('EREGISTRYUNREACHABLE', `cannot reach registry ${registry} to check the login (${detail}); check that the registry of --image is up and reachable from the build server`),

  engineUnreachable: (where: string, detail: string) =>
    new BuildError(
      'EENGINE',
      `cannot reach the Docker engine at ${where} (${detail}); start dockerd, or mount its socket into the server's container with -v /var/run/docker.sock:/var/run/docker.sock`,
    ),

  remoteEngine: (where: string, detail: string, hint: string) =>
    new BuildError('EENGINE', `cannot reach the Docker engine at ${where} (${detail}); ${hint}`),

  repoAuth: (repo: string, keyGiven: boolean) =>
    new BuildError(
      'EREPOAUTH',
      keyGiven
        ? `the git host refused the key for ${repo}; give a deploy key with read access to that repository in --repo_auth_key (base64 of the private key file)`
        : `the git host asks for a key for ${repo} and none was given; give a deploy key with read access to that repository in --repo_auth_key (base64 of the private key file)`,
      EXIT_USAGE,
      { field: 'repo_auth_key' },
    ),
  repoNotFound: (repo: string, detail: string) =>
    new BuildError('EREPONOTFOUND', `repository ${repo} was not found (${detail}); check --repo`, EXIT_USAGE, { field: 'repo' }),
  repoUnreachable: (repo: string, detail: string) =>
    new BuildError('EREPOUNREACHABLE', `cannot reach the host of ${repo}: ${detail}`),
  hostKeyChanged: (host: string, knownHostsFile: string) =>
    new BuildError(
      'EHOSTKEYCHANGED',
      `the SSH host key of ${host} is not the one pinned on the first build of this service; if the git host really changed its key, ask the server's operator to delete ${knownHostsFile}, otherwise someone may be impersonating the git host`,
    ),
  unknownRevision: (revision: string, repo: string) =>
    new BuildError(
      'EUNKNOWNREVISION',
      `revision "${revision}" does not exist in ${repo}; give a commit SHA, a branch or a tag that has been pushed`,
      EXIT_USAGE,
      { field: 'revision' },
    ),
  hgSubrepos: () =>
    new BuildError(
      'EHGSUBREPO',
      'the repository uses Mercurial subrepositories (.hgsub), which buildbot never checks out: a subrepository can name any repository the server can reach, another service\'s clone cache included; put that code into the repository itself',
    ),
  vcs: (what: string, detail: string) => new BuildError('EVCS', `${what} failed: ${detail}; check --repo and --revision, and that the repository is intact on its host`),

  missingDockerfile: (revision: string) =>
    new BuildError(
      'ENODOCKERFILE',
      `there is no Dockerfile at the root of the repository at ${revision}; buildbot builds the image from ./Dockerfile, so add one`,
    ),
  dockerfileRemovedByBuild: () =>
    new BuildError(
      'ENODOCKERFILE',
      'build.sh removed the Dockerfile: the image is built from the Dockerfile in what build.sh leaves in /project; keep it there, or have build.sh write one',
    ),
  repoFile: (name: string, kind: string, where = 'the repository') =>
    new BuildError(
      'EREPOFILE',
      `${name} in ${where} is ${kind}; buildbot reads and writes only regular files for Dockerfile, build.sh, .dockerignore and VERSION (never through a link, which could point at a file of the build server), so make ${name} a regular file or remove it`,
    ),
  repoFileTooLarge: (name: string, maxBytes: number, where = 'the repository') =>
    new BuildError(
      'EREPOFILE',
      `${name} in ${where} is larger than ${maxBytes / 1024} KiB, the most buildbot reads of it; make it smaller`,
    ),
  hardLink: (name: string, target: string) =>
    new BuildError(
      'EHARDLINK',
      `${name} in the build context is a hard link to ${target}, which .dockerignore (or buildbot, for .git and .hg) leaves out; copy the file instead of linking it, or stop leaving the target out`,
    ),
  dockerignore: (line: number, problem: string) =>
    new BuildError('EDOCKERIGNORE', `.dockerignore line ${line} cannot be used: ${problem}`),
  dockerignoreTooCostlyInAll: (steps: number, path: string) =>
    new BuildError(
      'EDOCKERIGNORE',
      `.dockerignore is too costly to match against this build context: ${steps.toLocaleString('en')} matching steps were spent by "${shortPath(path)}"; use fewer or simpler patterns (each "*" and "**" costs), or leave fewer files in the context`,
    ),
  dockerignoreTooCostly: (line: number, path: string) =>
    new BuildError(
      'EDOCKERIGNORE',
      `.dockerignore is too costly to match: the patterns up to line ${line} took more than the allowed work for the single path "${shortPath(path)}"; use fewer or simpler patterns`,
    ),
  buildScriptWithoutImage: () =>
    new BuildError(
      'ENOBUILDIMAGE',
      'build.sh has no "#build_inside_docker_image=IMAGE" line; add one naming the builder image, e.g. #build_inside_docker_image=node:20, or a "#build_inside_dockerfile=PATH" line naming a Dockerfile of the repository to build it from',
    ),
  bothBuilderHeaders: () =>
    new BuildError(
      'EBUILDERIMAGE',
      'build.sh has both a "#build_inside_docker_image=" and a "#build_inside_dockerfile=" line; keep one: the image to run build.sh in, or the Dockerfile of the repository to build that image from',
    ),
  badTestEntrypoint: (detail: string) =>
    new BuildError('ETESTENTRYPOINT', `the #test_in_container_entrypoint line of the Dockerfile cannot be read: ${detail}`),

  imageMissing: (image: string, role: string, detail: string) =>
    new BuildError(
      'EIMAGEMISSING',
      `the ${role} image ${image} is not on this Docker engine and could not be pulled (${detail}); push it to a registry the engine can reach, or load it into the engine`,
    ),
  buildScriptFailed: (exitCode: number) =>
    new BuildError('EBUILDSCRIPT', `build.sh exited with code ${exitCode}; its output is above`, exitCode),
  imageBuild: (detail: string) =>
    new BuildError('EIMAGEBUILD', `docker build failed: ${detail}; fix the Dockerfile step whose output is above`),
  testFailed: (exitCode: number) =>
    new BuildError('ETEST', `the in-image test exited with code ${exitCode}; nothing was pushed`, exitCode),
  push: (ref: string, detail: string, loggedIn: boolean) =>
    !loggedIn && /no basic auth credentials|unauthorized|authentication required/i.test(detail)
      ? new BuildError('EPUSHLOGIN', `pushing ${ref} failed: the registry asks for a login and none was given; give one with --docker_login_cmd (or --docker_login_cache)`, EXIT_USAGE, { field: 'docker_login_cmd' })
      : new BuildError('EPUSH', `pushing ${ref} failed: ${detail}; the registry refused it or could not be reached, tags pushed before it stay in the registry`),

  missingCustomDockerfile: (file: string, revision: string) =>
    new BuildError('ENODOCKERFILE', `there is no ${file} in the repository at ${revision}, the Dockerfile --dockerfile names; check the path (relative to the repository root) or add the file`),
  dockerfileOutsideRepo: (file: string) =>
    new BuildError('EREPOFILE', `--dockerfile ${file}: a directory on its path is a symbolic link or not a directory; the Dockerfile must be a file of the repository itself`),

  badBuildCache: (detail: string) =>
    new BuildError('EBUILDCACHE', `the #build_cache line of build.sh cannot be used: ${detail}; fix it (absolute paths in the builder separated by spaces, e.g. #build_cache=/root/.cache/go-build /go/pkg/mod)`),
  badBuilderDockerfile: (detail: string) =>
    new BuildError('EREPOFILE', `${detail}; fix the #build_inside_dockerfile line of build.sh`),
  builderDockerfileOutsideRepo: (file: string) =>
    new BuildError('EREPOFILE', `#build_inside_dockerfile=${file} in build.sh: a directory on its path is a symbolic link or not a directory; the builder's Dockerfile and its folder must be the repository's own`),
  missingBuilderDockerfile: (file: string, revision: string) =>
    new BuildError('ENODOCKERFILE', `there is no ${file} in the repository at ${revision}, the Dockerfile build.sh's #build_inside_dockerfile line names; check the path (relative to the repository root) or add the file`),
  builderBuild: (file: string, detail: string) =>
    new BuildError('EBUILDERBUILD', `building the builder image from ${file} failed: ${detail}; fix the step of ${file} whose output is above`),
  badBuilderImage: (detail: string) =>
    new BuildError('EBUILDERIMAGE', `${detail}; fix the #build_inside_docker_image line of build.sh`),
  workDir: (problem: string) => new BuildError('EWORKDIR', `the server's work dir is not usable: ${problem}`),
  /** The engine answered at the start but went away during a step (stopped, restarted, killed). */
  engineLost: (doing: string, detail: string) =>
    new BuildError(
      'EENGINELOST',
      `the Docker engine went away while ${doing} (${detail}); nothing after that step ran; check that dockerd is running (docker info, its log), then run the build again`,
    ),
  /** The same loss, named once the build knows which of the server's engines it was (--engine). */
  engineLostOn: (err: BuildError, engine: string) =>
    // Both forms of the loss: the engine went away (socket cut) or stopped (it ended the container).
    new BuildError('EENGINELOST', err.message.replace(/^the Docker engine (went away|stopped)/, `the Docker engine "${engine}" $1`), err.exitCode, { cause: err }),
  engineStopped: (doing: string, exitCode: number) =>
    new BuildError(
      'EENGINELOST',
      `the Docker engine stopped while ${doing} and ended its container (exit code ${exitCode}); nothing after that step ran; check that dockerd is running (docker info, its log), then run the build again`,
    ),
  noSpace: (dir: string) =>
    new BuildError('ENOSPC', `no space left in ${dir} (the work dir: clone caches and deploy keys); free space there or give the server a larger work dir, then run the build again`),

  /** Every engine of the server (--engine) is down or draining: the build is refused at once. */
  noEngine: (why: string) => new BuildError('ENOENGINE', `no Docker engine can take the build: ${why}; run it again once one is back (GET /api/v1/engines shows them)`),
  /** A build submitted while the server stops: refused by the build service, whichever front asked. */
  shuttingDown: () => new BuildError('ESHUTTINGDOWN', 'the server is shutting down; try again once it is back', EXIT_TEMPFAIL),
  cancelled: () => new BuildError('ECANCELLED', 'build cancelled; its containers were removed', EXIT_CANCELLED),
  /** The message names who went silent, doing what, and what to check (src/docker/watchdog.ts). */
  stalled: (message: string) => new BuildError('ESTALLED', message),
  timeLimit: (seconds: number, requested: boolean, serverLimit: number) =>
    new BuildError(
      'ETIMEOUT',
      requested
        ? `the build ran past the time limit of ${seconds} s that --timeout set and was cancelled; its containers were removed. Make the build faster, or give a larger --timeout (up to ${serverLimit})`
        : `the build ran past the time limit of ${seconds} s (the build timeout) and was cancelled; its containers were removed. Make the build faster, or raise --build-timeout / BUILDBOT_BUILD_TIMEOUT`,
      EXIT_TIMEOUT,
    ),
  timeoutAboveLimit: (requested: number, limit: number) =>
    new BuildError(
      'EUSAGE',
      `--timeout ${requested} is more than this server's time limit of ${limit} s (its --build-timeout); --timeout may only lower the limit: give ${limit} or less`,
      EXIT_USAGE,
      { field: 'timeout' },
    ),
};

/** The field an error is about: the one it carries, or else the first flag its message names. */
export function fieldOf(err: BuildError): string | undefined {
  return err.field ?? /--([a-z][a-z0-9_-]*)/.exec(err.message)?.[1];
}
