import type Docker from 'dockerode';
import { acceptsConnections } from '../docker/wait.js';
import type { ServerLog } from '../log/server-log.js';

export interface EngineWatch {
  stop(): void;
}

/**
 * Pings the engine every intervalMs (a ping on its socket costs about a millisecond) and logs
 * when it stops answering (engine-down) and when it answers again (engine-back), and tells onChange. Coming back
 * is when the work an outage left undone is done: removals that failed meanwhile, and the
 * orphan sweep, since an engine restarted with live-restore off stopped every container.
 */
export function watchEngine(docker: Docker, engine: string, log: ServerLog, onChange: (up: boolean) => void, intervalMs = 2_000, upAtStart = true): EngineWatch {
  let up = upAtStart;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const check = async () => {
    let error: string | undefined;
    try {
      // A fresh connection first: a ping over a kept-alive one is still answered by an engine
      // that is shutting down (it has closed its socket to new connections, then stops containers).
      if (!(await acceptsConnections(docker))) throw new Error('the engine refuses new connections');
      // The ping may itself hang on an engine that accepts and never answers: bounded too.
      await (docker.ping as (opts: object) => Promise<unknown>).call(docker, { abortSignal: AbortSignal.timeout(Math.max(intervalMs, 5_000)) });
    } catch (err) {
      error = (err as Error).message;
    }
    if (stopped) return;
    const wasUp = up;
    up = error === undefined;
    if (wasUp && !up) {
      log('engine-down', { engine, error });
      onChange(false);
    }
    if (!wasUp && up) {
      log('engine-back', { engine });
      onChange(true);
    }
    timer = setTimeout(() => void check(), intervalMs);
    timer.unref();
  };
  timer = setTimeout(() => void check(), intervalMs);
  timer.unref();
  return {
    stop() {
      stopped = true;
      clearTimeout(timer);
    },
  };
}
