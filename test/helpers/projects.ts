import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { keyPath, testEnv } from './env.js';
import type { GitRepo } from './repos.js';

/** Every file under a directory, read: none may hold a secret. */
export function storedFiles(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d)) {
      const file = path.join(d, name);
      const stat = statSync(file, { throwIfNoEntry: false });
      if (!stat) continue;
      // Clone caches hold the repository only: the build's files, not the server's.
      if (stat.isDirectory()) {
        if (name !== 'cache' && name !== '.git') walk(file);
      } else if (stat.isFile() && stat.size < 20 * 1024 * 1024) {
        out.push(readFileSync(file, 'latin1'));
      }
    }
  };
  walk(dir);
  return out;
}

export const projectsYaml = (projects: Record<string, string>) => `projects:\n${Object.entries(projects).map(([name, body]) => `  ${name}:\n${body.trim().split('\n').map((l) => `    ${l}`).join('\n')}`).join('\n')}\n`;

/** A project of the test environment: the deploy key and the registry login by reference. */
export const siteProject = (repo: GitRepo, image: string, extra = '') => `
repo: ${repo.url}
repo_auth_key: {file: ${keyPath('deploy_ed25519')}}
docker_login_cmd: {env: TEST_LOGIN}
image: ${testEnv().registry}/${image}
on_branch:
  main: ["latest", "main-{short_sha}"]
  "feature/*": ["{branch}"]
on_tag:
  pattern: '^v(?<version>[0-9]+\\.[0-9]+\\.[0-9]+)$'
  tags: ["{version}"]
${extra}`;

