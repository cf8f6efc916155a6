import { loadConfig } from '../config.js';
import { createDocker } from '../docker/engine.js';
import { EXIT_FAILURE, isBuildError } from '../errors.js';
import { runBuild } from '../pipeline/run-build.js';
import { requestOrExit } from '../request/parse.js';

/** `buildbot.sh …`: one build in this process, output on this terminal, Ctrl-C cancels. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const io = { stdout: process.stdout, stderr: process.stderr };
  const request = await requestOrExit(argv, env, io);
  if (typeof request === 'number') return request;
  let config;
  try {
    config = loadConfig(env);
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
    if (event === 'build-internal-error' || event === 'cleanup-failed' || event === 'build-trace') process.stderr.write(`buildbot: ${event} ${JSON.stringify(fields)}\n`);
  };
  try {
    return await runBuild(request, io, controller.signal, { config, docker: createDocker(config), log });
  } finally {
    process.off('SIGINT', cancel);
    process.off('SIGTERM', cancel);
    process.off('SIGHUP', cancel);
  }
}
