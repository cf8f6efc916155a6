import { EXIT_CANCELLED } from '../../errors.js';
import { UserOutput } from '../../io/output.js';
import { createRedactor } from '../../io/redact.js';
import { runBuild } from '../../pipeline/run-build.js';
import { serviceBusyMessage } from '../../pipeline/lock.js';
import { requestOrExit } from '../../request/parse.js';
import type { Command } from './types.js';

/** `buildbot.sh …` over SSH: the same pipeline as the local command, in line for a build slot. */
export const buildCommand: Command = {
  names: ['buildbot.sh', '/bin/buildbot.sh', '/usr/local/bin/buildbot.sh', 'buildbot'],
  async run(args, io, signal, services) {
    // No environment: a client never reaches the server's own variables.
    const request = await requestOrExit(args, {}, io);
    if (typeof request === 'number') return request;
    const out = new UserOutput(io, createRedactor(request.secrets));
    let release: () => void;
    try {
      release = await services.queue.acquire(
        request.serviceId, signal,
        (place) => out.line(`queued: ${place} in line; ${services.config.maxBuilds} build${services.config.maxBuilds === 1 ? '' : 's'} run at once`),
        () => out.line(serviceBusyMessage(request.serviceId)),
      );
    } catch {
      return EXIT_CANCELLED;
    } finally {
      await out.close();
    }
    try {
      return await runBuild(request, io, signal, services);
    } finally {
      release();
    }
  },
};
