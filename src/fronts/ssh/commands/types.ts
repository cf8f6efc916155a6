import type { BuildIO } from '../../../io/output.js';
import type { ServerLog } from '../../../log/server-log.js';
import type { Config } from '../../../pipeline/config.js';
import type { BuildService } from '../../../service/service.js';
import type { ProjectBuilds } from '../../../projects/builds.js';

export interface ServerServices {
  config: Config;
  log: ServerLog;
  builds: BuildService;
  /** The projects file's builds (--projects), for `buildbot.sh --project`. */
  projects?: ProjectBuilds;
}

/** One command a client may exec; the exec string's first word picks it. */
export interface Command {
  names: readonly string[];
  run(args: string[], io: BuildIO, signal: AbortSignal, services: ServerServices): Promise<number>;
}
