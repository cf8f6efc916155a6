import { loadConfig } from '../pipeline/config.js';
import { EnginePool } from '../engines/pool.js';
import { defaultEngineSpec } from '../engines/spec.js';
import { errors, EXIT_FAILURE, isBuildError } from '../model/errors.js';
import { settleAllBackground } from '../docker/background.js';
import { requestOrExit } from '../request/parse.js';
import { BuildService, DEFAULT_LOG_CAP_BYTES } from '../service/service.js';
import { History } from '../store/files/history.js';
import { remoteMain } from './remote.js';
import { followAsText } from '../service/text-front.js';

/** `buildbot.sh …`: one build in this process, output on this terminal, Ctrl-C cancels. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  if (argv.some((word) => word === '--server' || word.startsWith('--server='))) return remoteMain(argv, env);
  const io = { stdout: process.stdout, stderr: process.stderr };
  const request = await requestOrExit(argv, env, io, true);
  if (typeof request === 'number') return request;
  let config;
  let cleanupWaitMs: number;
  try {
    config = loadConfig(env, request.local);
    cleanupWaitMs = cleanupWait(env);
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    return isBuildError(err) ? err.exitCode : EXIT_FAILURE;
  }
  const controller = new AbortController();
  const cancel = () => controller.abort();
  process.once('SIGINT', cancel);
  process.once('SIGTERM', cancel);
  process.once('SIGHUP', cancel);
  const log = (event: string, fields: Record<string, unknown> = {}) => {
    if (event === 'build-internal-error' || event === 'cleanup-failed' || event === 'cleanup-gave-up' || event === 'build-trace' || event === 'build-trace-call') process.stderr.write(`buildbot: ${event} ${JSON.stringify(fields)}\n`);
  };
  // The same build service as the server's, for one build: the file lock in the checkout step
  // still makes it wait for a build of its service that runs beside it.
  // One engine, DOCKER_HOST's, as always: not started (no watch, no sweep) for one build.
  const engines = new EnginePool([defaultEngineSpec(env, 1)], config, { maxBuilds: 1, affinityWaitMs: 0, log, running: new Set(), named: false });
  const { removals } = engines.all[0];
  const service = new BuildService({ config, engines, log, maxBuilds: 1, logCapBytes: DEFAULT_LOG_CAP_BYTES });
  try {
    // Kept in the work dir's history, so a server sharing it lists local builds too.
    new History(config.workDir, service, Number(env.BUILDBOT_HISTORY_PER_SERVICE) || 50, log);
  } catch (err) {
    process.stderr.write(`buildbot: the build history in ${config.workDir} cannot be written (${(err as Error).message}); building without it\n`);
  }
  let build;
  try {
    build = service.submit(request, 'local');
  } catch (err) {
    // A --timeout above BUILDBOT_BUILD_TIMEOUT: refused before the build starts, as by the server.
    if (!isBuildError(err)) throw err;
    process.stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  controller.signal.addEventListener('abort', () => service.cancel(build.id), { once: true });
  try {
    return await followAsText(build, io, 1);
  } finally {
    // The build's containers are removed after its exit record (src/docker/background.ts): this
    // process is the one that knows them, so it waits for that before it exits.
    await settleAllBackground(cleanupWaitMs);
    // Containers the engine could not remove (it was restarting) are retried for a bounded time:
    // this process is the only one that knows about them, apart from the server's orphan sweep.
    if (removals.size) {
      process.stderr.write(`buildbot: the engine has not removed ${removals.left.join(', ')} yet; retrying for up to ${cleanupWaitMs / 1000} s (BUILDBOT_CLEANUP_WAIT)\n`);
      if (!(await removals.settle(cleanupWaitMs))) {
        const left = removals.left.join(' ');
        removals.stop('buildbot.sh is exiting');
        process.stderr.write(`buildbot: left behind: container ${left}; once the engine answers, remove it with: docker rm -f ${left}\n`);
      }
    }
    process.off('SIGINT', cancel);
    process.off('SIGTERM', cancel);
    process.off('SIGHUP', cancel);
  }
}

/** BUILDBOT_CLEANUP_WAIT: seconds to keep retrying removals the engine failed at exit (default 30). */
function cleanupWait(env: NodeJS.ProcessEnv): number {
  const value = env.BUILDBOT_CLEANUP_WAIT || '30';
  if (!/^\d{1,6}$/.test(value)) throw errors.usage(`BUILDBOT_CLEANUP_WAIT "${value}" is not a whole number of seconds`);
  return 1000 * Number(value);
}
