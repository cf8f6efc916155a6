import { loadConfig } from '../config.js';
import { createDocker } from '../docker/engine.js';
import { EXIT_FAILURE, isBuildError } from '../errors.js';
import { runBuild } from '../pipeline/run-build.js';
import { parseBuildCommand, usageMessage } from '../request/parse.js';

/** `buildbot.sh …`: one build in this process, output on this terminal, Ctrl-C cancels. */
export async function main(argv: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  let parsed;
  try {
    parsed = await parseBuildCommand(argv, env);
  } catch (err) {
    if (!isBuildError(err)) throw err;
    process.stderr.write(await usageMessage(err));
    return err.exitCode;
  }
  if (parsed.kind === 'help') {
    process.stdout.write(`${parsed.text}\n`);
    return 0;
  }
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
    if (event === 'build-internal-error' || event === 'cleanup-failed') process.stderr.write(`buildbot: ${event} ${JSON.stringify(fields)}\n`);
  };
  try {
    return await runBuild(parsed.request, { stdout: process.stdout, stderr: process.stderr }, controller.signal, { config, docker: createDocker(config), log });
  } finally {
    process.off('SIGINT', cancel);
    process.off('SIGTERM', cancel);
    process.off('SIGHUP', cancel);
  }
}
