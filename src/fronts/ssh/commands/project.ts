import yargs from 'yargs';
import { errors, EXIT_OK, isBuildError } from '../../../model/errors.js';
import type { BuildIO } from '../../../io/output.js';
import { createRedactor } from '../../../io/redact.js';
import { checkRequestSize } from '../../../request/limits.js';
import { followOverSsh } from './follow.js';
import type { ServerServices } from './types.js';

/** Whether a buildbot.sh call names a project (then it takes only --project, --revision and --tag). */
export const isProjectCall = (args: readonly string[]) => args.some((a) => a === '--project' || a.startsWith('--project='));

/**
 * `buildbot.sh --project NAME --revision REF [--tag TAG …]` over SSH: the server holds the key,
 * the login and the mapping; the caller names only what to build.
 */
export async function runProjectCommand(args: string[], io: BuildIO, signal: AbortSignal, services: ServerServices): Promise<number> {
  const usage = 'Usage: buildbot.sh --project NAME --revision REF [--tag TAG …]\n\nBuilds REF (a branch, a tag or a commit) of a project of the server\'s projects file, with its key, login and tags.';
  let help: string | undefined;
  let parsed: Record<string, unknown>;
  try {
    // The same bounds as every request, before yargs reads the words (issue 23).
    checkRequestSize(args);
    parsed = await yargs()
      .scriptName('buildbot.sh').usage(usage)
      .options({ project: { type: 'string' }, revision: { type: 'string' }, tag: { type: 'string', array: true } })
      .parserConfiguration({ 'camel-case-expansion': false, 'parse-numbers': false, 'parse-positional-numbers': false })
      .strict().help('help').version(false).exitProcess(false)
      .fail((message, err) => {
        throw err ?? errors.usage(message.replace(/^Unknown arguments?: (.+)$/, (_, names: string) => `--project takes only --revision and --tag; unknown: ${names.length > 200 ? `${names.slice(0, 200)}…` : names}`));
      })
      .parseAsync(args, {}, (_err, _argv, output) => {
        if (output) help = output;
      });
    if (help !== undefined) {
      io.stdout.write(`${help}\n`);
      return EXIT_OK;
    }
    if (!services.projects) throw errors.usage('this server has no projects file (buildbot-server --projects FILE); give the full build flags instead of --project');
    if (typeof parsed.project !== 'string' || !parsed.project) throw errors.usage('--project needs a project name');
    if (typeof parsed.revision !== 'string' || !parsed.revision) throw errors.usage('missing --revision: the branch, tag or commit to build');
  } catch (err) {
    if (!isBuildError(err)) throw err;
    io.stderr.write(`error: ${err.message}\n`);
    return err.exitCode;
  }
  const tags = (parsed.tag as string[] | undefined)?.flatMap((t) => String(t).split(',')).map((t) => t.trim()).filter(Boolean);
  let build;
  try {
    build = await services.projects.onDemand(parsed.project, parsed.revision, tags, 'ssh');
  } catch (err) {
    if (!isBuildError(err)) throw err;
    const out = createRedactor(services.projects.secrets);
    io.stderr.write(`error: ${out.redact(err.message)}${err.code === 'ENOMAPPING' ? ' with --tag' : ''}\n`);
    return err.exitCode;
  }
  services.log('project-build', { build: build.id, project: parsed.project, ref: build.summary.trigger?.ref, via: 'ssh' });
  return followOverSsh(build, io, signal, services);
}
