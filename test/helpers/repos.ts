import { execFileSync } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { keyPath, testEnv } from './env.js';

/** Files of a commit: text, content with a mode, a symbolic link to `symlink`, or null: the file goes. */
export type Files = Record<string, string | { content: string | Buffer; mode: number } | { symlink: string } | null>;

const sshCommand = () =>
  `ssh -i ${keyPath('deploy_ed25519')} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR`;

function writeFiles(dir: string, files: Files): void {
  for (const [name, spec] of Object.entries(files)) {
    const file = path.join(dir, name);
    mkdirSync(path.dirname(file), { recursive: true });
    rmSync(file, { force: true });
    if (spec === null) continue;
    if (typeof spec === 'object' && 'symlink' in spec) {
      symlinkSync(spec.symlink, file);
      continue;
    }
    const { content, mode } = typeof spec === 'string' ? { content: spec, mode: 0o644 } : spec;
    writeFileSync(file, content);
    chmodSync(file, mode);
  }
}

/** A repository on the test git host, pushed to over SSH with the deploy key, as a developer would. */
export class GitRepo {
  readonly url: string;
  private readonly work: string;

  constructor(readonly name: string) {
    const env = testEnv();
    const bare = path.join(env.reposDir, `${name}.git`);
    execFileSync('git', ['init', '-q', '--bare', bare]);
    this.url = `ssh://root@${env.gitHost}:${env.gitPort}${bare}`;
    this.work = mkdtempSync(path.join(os.tmpdir(), `repo-${name}-`));
    execFileSync('git', ['init', '-q', '-b', 'main', this.work]);
  }

  /** Commits the files (on top of the previous commit) and pushes; returns the commit id. */
  commit(files: Files, message = 'change', branch = 'main'): string {
    writeFiles(this.work, files);
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', this.work, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
        // Bounded: a wedged git host would otherwise block the test's one thread for good.
        env: { ...process.env, GIT_SSH_COMMAND: sshCommand() }, encoding: 'utf8', timeout: 60_000,
      }).trim();
    git('add', '-A');
    git('commit', '-q', '--allow-empty', '-m', message);
    git('push', '-q', '--force', this.url, `HEAD:refs/heads/${branch}`);
    return git('rev-parse', 'HEAD');
  }

  /** Tags HEAD (annotated with a message) and pushes the tag; returns the tag's object id and its commit. */
  tag(name: string, message?: string): { object: string; commit: string } {
    const git = (...args: string[]) =>
      execFileSync('git', ['-C', this.work, '-c', 'user.name=t', '-c', 'user.email=t@t', ...args], {
        env: { ...process.env, GIT_SSH_COMMAND: sshCommand() }, encoding: 'utf8', timeout: 60_000,
      }).trim();
    git('tag', '-f', ...(message ? ['-a', '-m', message] : []), name);
    git('push', '-q', '--force', this.url, `refs/tags/${name}`);
    return { object: git('rev-parse', `refs/tags/${name}`), commit: git('rev-parse', `refs/tags/${name}^{commit}`) };
  }

  head(): string {
    return execFileSync('git', ['-C', this.work, 'rev-parse', 'HEAD'], { encoding: 'utf8' }).trim();
  }

  dispose(): void {
    rmSync(this.work, { recursive: true, force: true });
  }
}

/** A Mercurial repository on the test git host, served by `hg serve --stdio` over the same sshd. */
export class HgRepo {
  readonly url: string;
  private readonly dir: string;

  constructor(name: string) {
    const env = testEnv();
    this.dir = path.join(env.reposDir, `${name}.hg`);
    execFileSync('hg', ['init', this.dir]);
    this.url = `ssh://root@${env.gitHost}:${env.gitPort}/${this.dir}`;
  }

  commit(files: Files, message = 'change'): string {
    writeFiles(this.dir, files);
    const hg = (...args: string[]) => execFileSync('hg', ['-R', this.dir, '--config', 'ui.username=t <t@t>', ...args], { encoding: 'utf8' }).trim();
    hg('addremove', '-q');
    hg('commit', '-m', message);
    return hg('log', '-r', '.', '--template', '{node}');
  }
}

/** A static site: build.sh in a builder image renders it, the runtime image only gets the output. */
export function staticSite(opts: { title?: string; buildExtra?: string; testLine?: string } = {}): Files {
  const env = testEnv();
  return {
    'build.sh': {
      mode: 0o755,
      content: [
        '#!/bin/sh',
        `#build_inside_docker_image=${env.busyboxImage}`,
        'set -e',
        'echo "building $(cat VERSION) of $BUILDBOT_SERVICE_ID"',
        'echo "a warning on stderr" >&2',
        'mkdir -p public',
        'sed "s/@VERSION@/$(cat VERSION)/" site/index.html.in > public/index.html',
        opts.buildExtra ?? '',
      ].join('\n') + '\n',
    },
    'site/index.html.in': `<h1>${opts.title ?? 'hello'} @VERSION@</h1>\n`,
    Dockerfile: [
      `FROM ${env.busyboxImage}`,
      opts.testLine ?? '#test_in_container_entrypoint=sh -c "test -s /www/index.html && echo test passed"',
      'COPY public /www',
      'COPY VERSION /www/VERSION',
    ].join('\n') + '\n',
  };
}

export function removeAll(...dirs: string[]): void {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
}
