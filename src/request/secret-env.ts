/**
 * Environment variables that may carry secrets for local runs, keeping them off argv. A module of
 * its own so the remote client (src/cli/remote.ts) reads the same names without loading the
 * parser and yargs, which cost it a third of a second of CPU at every start.
 */
export const SECRET_ENV = {
  repoAuthKey: 'BUILDBOT_REPO_AUTH_KEY',
  loginCmd: 'BUILDBOT_DOCKER_LOGIN_CMD',
  loginCache: 'BUILDBOT_DOCKER_LOGIN_CACHE',
  registryUser: 'BUILDBOT_REGISTRY_USERNAME',
  registryPassword: 'BUILDBOT_REGISTRY_PASSWORD',
} as const;
