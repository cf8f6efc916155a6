import type { BuildIO, Sink } from '../io/output.js';
import { serviceBusyMessage } from '../pipeline/lock.js';
import type { Build } from './build.js';
import type { BuildRecord } from '../model/build.js';

/** How a text front (SSH, the local terminal) says that a build waits. */
export function queuedLine(record: Extract<BuildRecord, { type: 'queued' }>, serviceId: string, maxBuilds: number): string {
  return record.waiting_for === 'service'
    ? serviceBusyMessage(serviceId)
    : `queued: ${record.place} in line; ${maxBuilds} build${maxBuilds === 1 ? '' : 's'} run at once`;
}

/**
 * Follows a build onto a pair of byte streams, as the SSH channel and the terminal show it:
 * output bytes as they come, a line when it waits. The streams' backpressure holds the build's
 * output. Resolves with the build's exit code.
 */
export function followAsText(build: Build, io: BuildIO, maxBuilds: number): Promise<number> {
  const full = new Set<Sink>();
  return new Promise<number>((resolve) => {
    build.subscribe({
      record(record, bytes) {
        let sink: Sink;
        let ok: boolean;
        if (record.type === 'output') {
          sink = io[record.stream];
          ok = sink.write(bytes ?? record.data);
        } else if (record.type === 'queued') {
          sink = io.stdout;
          ok = sink.write(`${queuedLine(record, build.summary.service_id, maxBuilds)}\n`);
        } else {
          // A live build always ends with a code; null is only for a stored, abandoned one.
          if (record.type === 'exit') resolve(record.code ?? 1);
          return true;
        }
        if (!ok) full.add(sink);
        return ok;
      },
      onDrain(resume) {
        const waiting = [...full];
        full.clear();
        let left = waiting.length;
        if (!left) return resume();
        for (const sink of waiting) sink.once('drain', () => --left === 0 && resume());
      },
    }, { blocking: true });
  });
}
