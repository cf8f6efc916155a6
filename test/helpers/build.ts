import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { keyBase64, keyPath, loginCmd, testEnv } from './env.js';

let counter = 0;
/** A name no other test uses, for service ids, repositories and images. */
export const unique = (prefix: string) => `${prefix}-${process.pid}-${++counter}`;

export interface BuildArgs {
  service: string;
  repo: string;
  revision: string;
  image: string;
  tags?: string[];
  key?: string | null;
  login?: string | null;
  extra?: string[];
}

export function buildArgs(a: BuildArgs): string[] {
  const args = ['--service_id', a.service, '--repo', a.repo, '--revision', a.revision, '--image', `${testEnv().registry}/${a.image}`];
  for (const tag of a.tags ?? ['1.0.0']) args.push('--tag', tag);
  if (a.key !== null) args.push('--repo_auth_key', a.key ?? keyBase64());
  if (a.login !== null) args.push('--docker_login_cmd', a.login ?? loginCmd());
  return [...args, ...(a.extra ?? [])];
}

/** Every form a secret of the test requests could take; none may ever reach the user. */
export function secretForms(): string[] {
  const env = testEnv();
  const key = readFileSync(keyPath('deploy_ed25519'), 'utf8');
  const bodyLines = key.split('\n').filter((l) => l.length > 20 && !l.startsWith('-----'));
  return [
    env.registryPassword,
    Buffer.from(`${env.registryUser}:${env.registryPassword}`).toString('base64'),
    keyBase64(),
    ...bodyLines,
  ];
}

export function assertNoSecrets(...outputs: string[]): void {
  for (const output of outputs) {
    for (const secret of secretForms()) assert.ok(!output.includes(secret), `a secret leaked into the output:\n${output}`);
  }
}

/** The step headers in the order they were printed, e.g. ['login', 'checkout', …]. */
export const headers = (stdout: string) => [...stdout.matchAll(/^\d+\.\d+s \| # ([\w.]+):/gm)].map((m) => m[1]);

export const resultMeta = (stdout: string): Record<string, unknown> => {
  const lines = stdout.trimEnd().split('\n');
  const last = lines.at(-1) ?? '';
  assert.match(last, /^__build_result_meta \{/, 'the last stdout line is the result line');
  return JSON.parse(last.slice('__build_result_meta '.length)) as Record<string, unknown>;
};
