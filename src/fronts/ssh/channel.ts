import type { ServerChannel } from 'ssh2';
import type { BuildIO, Sink } from '../../io/output.js';

/**
 * The channel's stdout and stderr as sinks that stop taking writes once the channel is
 * gone: ssh2 never completes a write on a closed channel, which would leave the build
 * waiting for 'drain' forever after a disconnect.
 */
export function channelIO(channel: ServerChannel): BuildIO {
  let open = true;
  channel.once('close', () => (open = false));
  const sink = (stream: NodeJS.WritableStream): Sink => ({
    write: (chunk) => (open ? stream.write(chunk) : true),
    once: (_event, listener) => {
      if (!open) return listener();
      const fire = () => {
        stream.off('drain', fire);
        channel.off('close', fire);
        listener();
      };
      stream.once('drain', fire);
      channel.once('close', fire);
    },
  });
  return { stdout: sink(channel), stderr: sink(channel.stderr) };
}

function flushed(stream: NodeJS.WritableStream): Promise<void> {
  // Write callbacks run in order: this one runs once everything before it has been sent.
  return new Promise((resolve) => stream.write(Buffer.alloc(0), () => resolve()));
}

/**
 * Sends the exit status after all output, then closes: exit() after end() would be dropped.
 * Resolves once the client has acknowledged the close, so that ending the connection right
 * after (as a shutdown does) cannot cut off the status on its way.
 */
export async function finishChannel(channel: ServerChannel, exitCode: number): Promise<void> {
  if (channel.destroyed || !channel.writable) return;
  const closed = new Promise<void>((resolve) => channel.once('close', () => resolve()));
  await Promise.race([Promise.all([flushed(channel), flushed(channel.stderr)]), closed]);
  if (!channel.writable) return;
  channel.exit(exitCode);
  channel.end();
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([closed, new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_ACK_TIMEOUT_MS)))]);
  clearTimeout(timer);
}

/** A client that never acknowledges the close is not waited for longer than this. */
const CLOSE_ACK_TIMEOUT_MS = 5_000;

/** Refuses what the channel asked for with a one-line explanation on stderr. */
export async function refuse(channel: ServerChannel, message: string, exitCode = 1): Promise<void> {
  channel.stderr.write(`buildbot: ${message}\n`);
  await finishChannel(channel, exitCode);
}
