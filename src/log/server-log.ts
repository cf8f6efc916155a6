/** The server's log: one event with its fields; never a secret, never build output. */
export type ServerLog = (event: string, fields?: Record<string, unknown>) => void;

/** A field's most characters in the log: a client chooses many of them, and must not write unbounded lines. */
export const MAX_LOGGED_FIELD = 4096;

const format = (value: unknown) => {
  let text = typeof value === 'string' ? value : JSON.stringify(value) ?? String(value);
  if (text.length > MAX_LOGGED_FIELD) text = `${text.slice(0, MAX_LOGGED_FIELD)}…(${text.length - MAX_LOGGED_FIELD} more characters)`;
  return /^[\w.:/@+-]*$/.test(text) ? text : JSON.stringify(text);
};

/** One line per event on stderr: time, event, key=value fields. Callers never pass secrets or build output. */
export function createServerLog(stream: NodeJS.WritableStream = process.stderr): ServerLog {
  return (event, fields = {}) => {
    const pairs = Object.entries(fields).filter(([, v]) => v !== undefined).map(([k, v]) => `${k}=${format(v)}`);
    stream.write(`${new Date().toISOString()} ${event}${pairs.length ? ' ' + pairs.join(' ') : ''}\n`);
  };
}
