import { isUtf8 } from 'node:buffer';
import type { BuildRecord } from './build.js';

/**
 * A record as one line of JSON (`prefix` + JSON + `suffix`), byte for byte what JSON.stringify
 * gives. An output record that carries its bytes is escaped from them as Latin-1 text: each byte
 * stands as one character, JSON.stringify escapes only quotes, backslashes and control characters
 * (all ASCII) and leaves every other character as it is, so writing the result back as Latin-1
 * gives the UTF-8 bytes again, escaped. That skips decoding the output to UTF-16 and encoding it
 * again, and V8 keeps one-byte strings in its fast paths. Bytes that are not valid UTF-8 take the
 * decoded path, which replaces them as the decoder does everywhere else. `prefix` and `suffix`
 * must be ASCII (they are written as Latin-1 with the data).
 */
export function recordJson(record: BuildRecord, prefix = '', suffix = '\n'): JsonText {
  const bytes = record.type === 'output' ? (record as { bytes?: Buffer }).bytes : undefined;
  if (record.type !== 'output' || !bytes || !isUtf8(bytes)) return `${prefix}${JSON.stringify(record)}${suffix}`;
  // Handed to the socket as a string with its encoding: a Buffer made here would be one more copy.
  return { latin1: `${prefix}{"seq":${record.seq},"time":${JSON.stringify(record.time)},"type":"output","stream":${JSON.stringify(record.stream)},"data":${JSON.stringify(bytes.toString('latin1'))}}${suffix}` };
}

/** What to write: a string as UTF-8, `latin1`, one byte a character (see recordJson), or bytes (record-frames.ts). */
export type JsonText = string | { latin1: string } | Buffer;

/** Writes text to a stream in its encoding; what write() returns. */
export function writeText(stream: { write(text: string, encoding: BufferEncoding): boolean; write(bytes: Buffer): boolean }, text: JsonText): boolean {
  if (typeof text === 'string') return stream.write(text, 'utf8');
  return Buffer.isBuffer(text) ? stream.write(text) : stream.write(text.latin1, 'latin1');
}

/** The text as bytes (tests, and readers that want one Buffer). */
export const textBytes = (text: JsonText): Buffer => (typeof text === 'string' ? Buffer.from(text) : Buffer.isBuffer(text) ? text : Buffer.from(text.latin1, 'latin1'));
