import { readFileSync } from 'node:fs';
import path from 'node:path';

/** What test/env/up.sh brought up; the tests find it through BUILDBOT_TEST_DIR. */
export interface TestEnv {
  registry: string;
  registryUser: string;
  registryPassword: string;
  gitHost: string;
  gitPort: number;
  gitHostPublicKey: string;
  reposDir: string;
  keysDir: string;
  busyboxImage: string;
  /** The test cluster's database, postgres://USER@127.0.0.1:PORT/DB: no password in it. */
  postgresUrl: string;
  postgresPassword: string;
  /** A file holding the password alone (mode 0600). */
  postgresPasswordFile: string;
  /** pg_ctl of the test cluster as its owner: `postgresCtl start`, `stop -m fast`, `restart -m fast`. */
  postgresCtl: string;
  /** PostgreSQL's programs (initdb, pg_ctl, pg_dump, psql), off PATH on Debian. */
  postgresBin: string;
  haproxy: string;
  dir: string;
}

let cached: TestEnv | undefined;

export function testEnv(): TestEnv {
  if (cached) return cached;
  const dir = process.env.BUILDBOT_TEST_DIR;
  if (!dir) throw new Error('BUILDBOT_TEST_DIR is not set: run the tests with `npm test`, which brings up the test environment');
  cached = { ...JSON.parse(readFileSync(path.join(dir, 'env.json'), 'utf8')), dir } as TestEnv;
  return cached;
}

export const keyPath = (name: string) => path.join(testEnv().keysDir, name);
export const keyBase64 = (name = 'deploy_ed25519') => readFileSync(keyPath(name)).toString('base64');
export const loginCmd = (password = testEnv().registryPassword) =>
  `docker login -u ${testEnv().registryUser} -p '${password}' ${testEnv().registry}`;

/**
 * The engine the tests use, for the product processes they start (which get a clean
 * environment): DOCKER_HOST when the tests run against another engine than the default one.
 */
export const engineEnv = (): Record<string, string> => (process.env.DOCKER_HOST ? { DOCKER_HOST: process.env.DOCKER_HOST } : {});

/** The engine's socket on this machine, to hand to a container. */
export const engineSocket = () => (process.env.DOCKER_HOST?.startsWith('unix://') ? process.env.DOCKER_HOST.slice('unix://'.length) : '/var/run/docker.sock');
