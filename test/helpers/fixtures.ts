import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { unique } from './build.js';
import { newWorkDir } from './cli.js';
import { GitRepo, removeAll, type Files } from './repos.js';

/** Within a describe(): a work dir for the suite, removed after it. */
export function suiteWorkDir(): () => string {
  let dir = '';
  before(() => {
    dir = newWorkDir();
  });
  after(() => removeAll(dir));
  return () => dir;
}

/** Within a describe(): makes repositories on the git host with one commit, and cleans up after the suite. */
export function suiteRepos(): (name: string, files: Files) => GitRepo {
  const repos: GitRepo[] = [];
  after(() => repos.forEach((r) => r.dispose()));
  return (name, files) => {
    const repo = new GitRepo(unique(name));
    repos.push(repo);
    repo.commit(files);
    return repo;
  };
}

export async function eventually(check: () => Promise<boolean> | boolean, what: string, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(100);
  }
}
