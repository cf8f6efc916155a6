import { EXIT_FAILURE, isBuildError } from '../model/errors.js';
import { parseServerArgs } from '../app/config.js';
import { createServerLog } from '../log/server-log.js';
import { startServer } from '../app/server.js';
import { checkProjects } from '../projects/builds.js';

const log = createServerLog();
try {
  const parsed = await parseServerArgs(process.argv.slice(2), process.env);
  if (parsed.kind === 'help') {
    process.stdout.write(`${parsed.text}\n`);
  } else if (parsed.kind === 'check-projects') {
    const checked = await checkProjects(parsed.file, process.env);
    for (const warning of checked.warnings) process.stderr.write(`warning: ${warning}\n`);
    process.stdout.write(`${parsed.file}: ${checked.projects.size} project${checked.projects.size === 1 ? '' : 's'}, valid\n`);
  } else {
    const server = await startServer(parsed.config, log);
    let signals = 0;
    const stop = (signal: NodeJS.Signals) => {
      signals++;
      log('signal', { signal });
      if (signals === 1) void server.shutdown().then(() => process.exit(0));
      else server.abortAll();
    };
    process.on('SIGTERM', stop);
    process.on('SIGINT', stop);
    process.on('SIGHUP', () => {
      log('signal', { signal: 'SIGHUP' });
      void server.reloadProjects();
    });
  }
} catch (err) {
  if (isBuildError(err)) {
    process.stderr.write(`error: ${err.message}\n`);
    process.exitCode = err.exitCode;
  } else {
    const e = err as NodeJS.ErrnoException;
    process.stderr.write(`error: the server could not start: ${e.code === 'EADDRINUSE' ? 'the address is in use; pick another with --listen' : e.message}\n`);
    process.exitCode = EXIT_FAILURE;
  }
}
