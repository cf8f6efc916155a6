import type { ServerLog } from '../pipeline/context.js';

const format = (value: unknown) => {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return /^[\w.:/@+-]*$/.test(text) ? text : JSON.stringify(text);
};

/** One line per event on stderr: time, event, key=value fields. Callers never pass secrets or build output. */
export function createServerLog(stream: NodeJS.WritableStream = process.stderr): ServerLog {
  return (event, fields = {}) => {
    const pairs = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${format(v)}`);
    stream.write(`${new Date().toISOString()} ${event}${pairs.length ? ' ' + pairs.join(' ') : ''}\n`);
  };
}
