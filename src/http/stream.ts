import type { ServerResponse } from 'node:http';
import type { Build } from '../service/build.js';
import type { History } from '../service/history.js';
import { writeText, type JsonText } from '../service/record-json.js';
import { isFinal, type BuildRecord, type BuildSummary } from '../service/types.js';

/** How a stream shows a record: a line of NDJSON, an SSE event, log text; '' to skip it. */
export type RecordFormat = (record: BuildRecord) => JsonText;

/** A reader that does not take the records it is sent is dropped past this much (it can resume). */
export const MAX_UNREAD_BYTES = 16 * 1024 * 1024;

/**
 * Sends a build of this process: what it kept after `after`, then live until its exit record.
 * A blocking reader (the caller's own follow) holds the build's output while its connection is
 * slow; any other is dropped once `maxUnread` bytes wait for it. A closed connection only
 * unsubscribes. Records that arrive together (a replay, a burst) go out in one socket write.
 */
export function followLive(res: ServerResponse, build: Build, after: number, format: RecordFormat, options: { blocking?: boolean; maxUnread?: number } = {}): Promise<void> {
  const blocking = options.blocking ?? false;
  const maxUnread = options.maxUnread ?? MAX_UNREAD_BYTES;
  return new Promise<void>((resolve) => {
    let unsubscribe = () => {};
    let ended = false;
    let corked = false;
    const end = () => {
      if (ended) return;
      ended = true;
      unsubscribe();
      if (!res.writableEnded) res.end();
      resolve();
    };
    res.once('close', end);
    unsubscribe = build.subscribe({
      record(record) {
        if (ended) return true;
        const text = format(record);
        if (text === '') return true;
        if (!corked) {
          corked = true;
          res.cork();
          process.nextTick(() => {
            corked = false;
            res.uncork();
          });
        }
        const ok = writeText(res, text);
        if (record.type === 'exit') end();
        else if (!blocking && res.writableLength > maxUnread) res.destroy();
        return ok;
      },
      onDrain(resume) {
        if (ended) return resume();
        const go = () => {
          res.off('drain', go);
          res.off('close', go);
          resume();
        };
        res.once('drain', go);
        res.once('close', go);
      },
    }, { after, blocking });
    if (ended) unsubscribe();
  });
}

/**
 * Sends the stored records of a build that is not live here, with backpressure. A finished
 * build with no exit record of its own (abandoned: its process died) gets one, with code null,
 * so every stream ends alike when `closeWithExit`. One still running in another process (a local
 * buildbot.sh sharing the work dir) gets none: the stream ends and the reader comes back after
 * the last seq it saw for what was stored since.
 */
export async function replayStored(res: ServerResponse, summary: BuildSummary, after: number, history: History, format: RecordFormat, closeWithExit: boolean): Promise<void> {
  let last = after;
  let exited = false;
  for await (const record of history.replay(summary.id, after)) {
    last = record.seq;
    exited ||= record.type === 'exit';
    if (!(await write(res, format(record)))) return;
  }
  if (closeWithExit && !exited && isFinal(summary.status)) {
    await write(res, format({ seq: last + 1, time: summary.finished_at ?? new Date().toISOString(), type: 'exit', code: summary.exit_code, status: summary.status }));
  }
  res.end();
}

/** Writes and waits for room; false once the connection is gone. */
export function write(res: ServerResponse, text: JsonText): Promise<boolean> {
  if (res.destroyed) return Promise.resolve(false);
  if (text === '' || writeText(res, text)) return Promise.resolve(true);
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve(!res.destroyed);
    };
    res.once('drain', done);
    res.once('close', done);
  });
}
