import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { mkdir, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { errors } from '../../model/errors.js';
import { acquireServiceLock, serviceBusyMessage } from '../lock.js';
import { classifyVcsFailure, hostOf } from '../../vcs/classify.js';
import { gitRepository } from '../../vcs/git.js';
import { hgRepository } from '../../vcs/hg.js';
import { prepareSsh } from '../../vcs/ssh.js';
import { VcsCommandError, type Repository, type VcsContext } from '../../vcs/types.js';
import type { BuildContext, Step } from '../context.js';
import { cloneCacheDir, ensureCacheRoot, migrateCloneCache } from '../clone-cache.js';

export const checkoutStep: Step = {
  name: 'checkout',
  describe: ({ request }) => `${request.repo.displayUrl} at ${request.revision} (service ${request.serviceId})`,
  async run(ctx) {
    const { request, config, out } = ctx;
    const release = await acquireServiceLock(
      config.workDir, request.serviceId, ctx.signal,
      () => out.line(serviceBusyMessage(request.serviceId)),
      (err) => ctx.log('lock-compromised', { service: request.serviceId, error: err.message }),
    );
    ctx.cleanups.push(release);

    const ssh = await prepareSsh(config.workDir, request.serviceId, request.repoAuthKey, config.gitSshPersistSeconds);
    ctx.cleanups.push(ssh.dispose);
    const host = hostOf(request.repo.url);
    const vcsContext: VcsContext = {
      sshCommand: ssh.command, env: config.toolEnv, signal: ctx.signal, basicAuth: request.repo.basicAuth ? { url: request.repo.displayUrl, credentials: request.repo.basicAuth } : undefined,
      guard: (command, run) => ctx.watchdog.guard({
        source: request.repo.vcs,
        doing: `running ${command} for ${request.repo.displayUrl}`,
        hint: `check that ${host} is up and reachable from the build server`,
      }, run),
    };
    const repo = request.repo.vcs === 'hg' ? hgRepository(vcsContext) : gitRepository(vcsContext);
    // Under the service lock: a cache of the old layout (<work-dir>/<service_id>) moves first.
    await ensureCacheRoot(config.workDir);
    if (await migrateCloneCache(config.workDir, request.serviceId)) ctx.log('clone-cache-migrated', { service: request.serviceId });
    const dir = cloneCacheDir(config.workDir, request.serviceId);
    try {
      const { commit, fresh } = await fetchRevision(ctx, repo, dir);
      await repo.checkout(dir, commit, fresh);
      ctx.checkoutDir = dir;
      ctx.commit = commit;
      out.line(`checked out ${commit}`);
      ctx.hooks?.checkedOut?.(commit);
    } catch (err) {
      if (err instanceof VcsCommandError && !ctx.signal.aborted) {
        throw classifyVcsFailure(err.output, {
          repo: request.repo.displayUrl, host: hostOf(request.repo.url), knownHostsFile: ssh.knownHostsFile, what: err.command, workDir: config.workDir,
          keyGiven: request.repoAuthKey !== undefined || request.repo.basicAuth !== undefined,
        });
      }
      throw err;
    }
  },
};

async function fetchRevision(ctx: BuildContext, repo: Repository, dir: string): Promise<{ commit: string; fresh: boolean }> {
  const { request, config, out } = ctx;
  // With https credentials git gets the URL without them (and they stay out of .git/config).
  const url = request.repo.basicAuth ? request.repo.displayUrl : request.repo.url;
  let fresh = false;
  if (existsSync(dir) && !(await repo.isCloneOf(dir, url))) {
    out.line(`the clone cache of ${request.serviceId} is broken or holds another repository; cloning again`);
    await rm(dir, { recursive: true, force: true });
  }
  if (!existsSync(dir)) {
    // Clone beside the cache and rename, so an interrupted clone never looks like a cache.
    const tmpRoot = path.join(config.workDir, '.tmp');
    await mkdir(tmpRoot, { recursive: true });
    const tmp = path.join(tmpRoot, `${request.serviceId}-${randomBytes(4).toString('hex')}`);
    ctx.cleanups.push(() => rm(tmp, { recursive: true, force: true }));
    out.line(`cloning ${request.repo.displayUrl}`);
    await repo.clone(url, tmp);
    await rename(tmp, dir);
    fresh = true;
  }
  let commit = fresh || !repo.isMovable(request.revision) ? await repo.resolve(dir, request.revision) : undefined;
  if (commit && !fresh) out.line(`${request.revision} is in the clone cache already; not fetching`);
  if (!commit) {
    out.line(`fetching ${request.revision}`);
    await repo.fetch(dir, url, request.revision);
    commit = await repo.resolve(dir, request.revision);
  }
  if (!commit) throw errors.unknownRevision(request.revision, request.repo.displayUrl);
  return { commit, fresh };
}
