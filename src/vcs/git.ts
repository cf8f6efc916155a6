import { rm } from 'node:fs/promises';
import path from 'node:path';
import { simpleGit, type SimpleGit } from 'simple-git';
import { traced } from '../log/trace.js';
import { isBuildError } from '../model/errors.js';
import { looksLikeCommitId, VcsCommandError, withoutProgress, type Repository, type VcsContext } from './types.js';

const FULL_COMMIT_ID = /^[0-9a-f]{40}$/i;

// Lock files a killed git leaves behind; the service lock guarantees no git runs here now.
const STALE_LOCKS = ['index.lock', 'HEAD.lock', 'config.lock', 'packed-refs.lock', 'shallow.lock'];

export function gitRepository(ctx: VcsContext): Repository {
  // https credentials travel as an HTTP header set through the environment (readable only by
  // this user and root), never on git's command line, where every user of the machine sees them.
  // The header is scoped to the repository's URL (http.<url>.extraHeader): git sends it only to
  // that host and path, not to a host a redirect leads to, nor to any other URL git might reach.
  const authEnv: Record<string, string> = ctx.basicAuth
    ? { GIT_CONFIG_COUNT: '1', GIT_CONFIG_KEY_0: `http.${ctx.basicAuth.url}.extraHeader`, GIT_CONFIG_VALUE_0: `Authorization: Basic ${ctx.basicAuth.credentials}` }
    : {};
  // simple-git refuses every call once its abort signal fired: one instance per build.
  const gitAt = (baseDir: string): SimpleGit =>
    simpleGit({
      baseDir,
      abort: ctx.signal,
      config: [`core.sshCommand=${ctx.sshCommand}`, 'advice.detachedHead=false', 'gc.auto=0'],
      unsafe: { allowUnsafeSshCommand: true, allowUnsafeConfigEnvCount: ctx.basicAuth !== undefined },
      // GIT_TERMINAL_PROMPT=0: an https repository without credentials fails instead of waiting at a prompt.
      allowEnvironment: ['GIT_TERMINAL_PROMPT', ...Object.keys(authEnv)],
    } as Parameters<typeof simpleGit>[0]).env({ ...ctx.env, ...authEnv });

  const runOnce = (dir: string, args: string[], progress: () => void): Promise<string> =>
    traced('git', () => gitAt(dir).outputHandler((_command, stdout, stderr) => {
      stdout.on('data', progress);
      stderr.on('data', progress);
    }).raw(args), `git ${args[0]}`);
  const run = async (dir: string, args: string[]): Promise<string> => {
    try {
      return await (ctx.guard ? ctx.guard(`git ${args[0]}`, (progress) => runOnce(dir, args, progress)) : runOnce(dir, args, () => {}));
    } catch (err) {
      if (isBuildError(err)) throw err;
      throw new VcsCommandError(`git ${args[0]}`, withoutProgress((err as Error).message));
    }
  };

  // No --quiet: simple-git waits 50 ms more for a git that wrote nothing at all.
  const commitOf = async (dir: string, ref: string): Promise<string | undefined> => {
    const out = await run(dir, ['rev-parse', '--verify', '--end-of-options', `${ref}^{commit}`]).catch(() => '');
    return out.trim() || undefined;
  };

  return {
    async isCloneOf(dir, url) {
      try {
        const top = (await gitAt(dir).raw(['rev-parse', '--show-toplevel'])).trim();
        const origin = (await gitAt(dir).raw(['config', '--get', 'remote.origin.url'])).trim();
        if (path.resolve(top) !== path.resolve(dir) || origin !== url) return false;
        await Promise.all(STALE_LOCKS.map((f) => rm(path.join(dir, '.git', f), { force: true })));
        return true;
      } catch {
        return false;
      }
    },
    async clone(url, into) {
      // --progress: a live transfer prints, so the stall watchdog can tell it from a silent host.
      await run(path.dirname(into), ['clone', '--progress', '--no-checkout', '--origin', 'origin', '--', url, into]);
    },
    async resolve(dir, revision) {
      // A full commit id names only itself; an abbreviated one might also be a branch or tag name.
      const candidates = FULL_COMMIT_ID.test(revision)
        ? [revision]
        : looksLikeCommitId(revision)
          ? [revision, `refs/remotes/origin/${revision}`, `refs/tags/${revision}`]
          : [`refs/remotes/origin/${revision}`, `refs/tags/${revision}`];
      for (const ref of candidates) {
        const commit = await commitOf(dir, ref);
        if (commit) return commit;
      }
      return undefined;
    },
    isMovable: (revision) => !looksLikeCommitId(revision),
    async fetch(dir, _url, revision) {
      await run(dir, ['fetch', '--progress', '--prune', '--tags', '--force', 'origin', '+refs/heads/*:refs/remotes/origin/*']);
      // A commit no branch or tag points at any more is only fetched by its full id.
      if (FULL_COMMIT_ID.test(revision) && !(await commitOf(dir, revision))) {
        await run(dir, ['fetch', '--progress', 'origin', revision]).catch((err: unknown) => {
          // A stall still ends the build; any other failure means the id is not there.
          if (!(err instanceof VcsCommandError)) throw err;
        });
      }
    },
    async checkout(dir, commit, fresh) {
      await run(dir, ['checkout', '--force', '--detach', commit]);
      // Not -q: the VERSION file of the last build is usually there to remove, so git says so
      // and simple-git does not wait 50 ms more for a silent git.
      if (!fresh) await run(dir, ['clean', '-ffdx']);
    },
  };
}
