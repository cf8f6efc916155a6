import { spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { looksLikeCommitId, OUTPUT_TAIL, VcsCommandError, withoutProgress, type Repository, type VcsContext } from './types.js';

// Mercurial names revisions with a query language; only plain names and ids are let through.
const SAFE_REVISION = /^[A-Za-z0-9._/-]+$/;

/**
 * No configuration but the clone's own .hg/hgrc (which hg writes, not the repository's author):
 * no user or system hgrc can turn on hooks or extensions, and output is plain. Subrepositories
 * are off on every command: a .hgsub line "sub = /path" would have hg update copy any local
 * repository, another service's clone cache included, into this build and its image.
 */
const HG_ENV = { HGRCPATH: '', HGPLAIN: '1' };

export function hgRepository(ctx: VcsContext): Repository {
  // Progress display on (HGPLAINEXCEPT=progress, assume-tty: hg prints none into a pipe
  // otherwise), so that a live transfer shows as bytes to the stall watchdog.
  const env = { ...ctx.env, ...HG_ENV, HGPLAINEXCEPT: 'progress' };
  const runOnce = (cwd: string, args: string[], progress: () => void): Promise<string> =>
    new Promise((resolve, reject) => {
      const child = spawn('hg', ['--noninteractive', '--config', 'subrepos.allowed=false', '--config', `ui.ssh=${ctx.sshCommand}`, '--config', 'progress.assume-tty=true', ...args], {
        cwd, env, signal: ctx.signal, stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      const tail = (text: string) => (text.length > OUTPUT_TAIL ? text.slice(-OUTPUT_TAIL) : text);
      child.stdout.on('data', (d: Buffer) => {
        progress();
        stdout += d.toString();
      });
      child.stderr.on('data', (d: Buffer) => {
        progress();
        stderr = tail(stderr + d.toString());
      });
      child.on('error', (err) => reject(new VcsCommandError(`hg ${args[0]}`, err.message)));
      child.on('close', (code) => (code === 0 ? resolve(stdout) : reject(new VcsCommandError(`hg ${args[0]}`, withoutProgress(stderr) || tail(stdout)))));
    });
  const run = (cwd: string, args: string[]): Promise<string> =>
    (ctx.guard ? ctx.guard(`hg ${args[0]}`, (progress) => runOnce(cwd, args, progress)) : runOnce(cwd, args, () => {}));

  return {
    async isCloneOf(dir, url) {
      try {
        const hgrc = await readFile(path.join(dir, '.hg', 'hgrc'), 'utf8');
        if (!hgrc.split('\n').some((l) => l.replace(/\s/g, '') === `default=${url}`)) return false;
        await run(dir, ['root']);
        await Promise.all(['wlock', 'store/lock'].map((f) => rm(path.join(dir, '.hg', f), { force: true })));
        return true;
      } catch {
        return false;
      }
    },
    async clone(url, into) {
      await run(path.dirname(into), ['clone', '--noupdate', '--', url, into]);
    },
    async resolve(dir, revision) {
      if (!SAFE_REVISION.test(revision)) return undefined;
      // A quoted string in a revset is looked up as a name, never evaluated.
      const out = await run(dir, ['log', '--rev', `'${revision}'`, '--template', '{node}']).catch(() => '');
      return out.trim() || undefined;
    },
    isMovable: (revision) => !looksLikeCommitId(revision),
    async fetch(dir) {
      await run(dir, ['pull']);
    },
    async checkout(dir, commit, fresh) {
      await run(dir, ['update', '--clean', '--rev', commit]);
      if (!fresh) await run(dir, ['--config', 'extensions.purge=', 'purge', '--all']);
    },
  };
}
