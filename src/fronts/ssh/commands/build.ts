import { isBuildError } from '../../../model/errors.js';
import { UserOutput } from '../../../io/output.js';
import { createRedactor } from '../../../io/redact.js';
import { requestOrExit } from '../../../request/parse.js';
import { followOverSsh } from './follow.js';
import type { Command } from './types.js';
import { isProjectCall, runProjectCommand } from './project.js';

/**
 * `buildbot.sh …` over SSH: the request goes to the build service, its records come back as
 * bytes on the channel. Closing the connection cancels the build.
 */
export const buildCommand: Command = {
  names: ['buildbot.sh', '/bin/buildbot.sh', '/usr/local/bin/buildbot.sh', 'buildbot'],
  async run(args, io, signal, services) {
    // A configured project: the server has its key and login (src/projects/).
    if (isProjectCall(args)) return runProjectCommand(args, io, signal, services);
    // No environment: a client never reaches the server's own variables.
    const request = await requestOrExit(args, {}, io);
    if (typeof request === 'number') return request;
    // Refused by the service (a --timeout above the server's limit, the server stopping) before it waits in line.
    let build;
    try {
      build = services.builds.submit(request, 'ssh');
    } catch (err) {
      if (!isBuildError(err)) throw err;
      const out = new UserOutput(io, createRedactor(request.secrets));
      out.errorLine(`error: ${err.message}`);
      await out.close();
      return err.exitCode;
    }
    return followOverSsh(build, io, signal, services);
  },
};
