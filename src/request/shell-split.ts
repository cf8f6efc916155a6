import { parse, type ParseEntry } from 'shell-quote';
import { errors } from '../model/errors.js';

/**
 * Splits a command line into words the way a POSIX shell would (quotes, backslash
 * escapes), without running a shell. Anything a shell would act on instead of passing
 * as a word (operators, redirections, variables, command substitution, globs, comments)
 * is refused, because nothing here expands or runs it.
 *
 * shell-quote does the splitting; it silently accepts an unterminated quote, drops a
 * trailing backslash and keeps backticks as text, so a small scan catches those first.
 */
export function shellSplit(line: string, what: string, options: { quoteInput?: boolean } = {}): string[] {
  // Where the line holds a secret, an error must not quote the part that failed.
  const show = (text: string) => (options.quoteInput === false ? '' : ` (${text})`);
  checkQuoting(line, what);
  const words: string[] = [];
  const variableMarker = (name: string) => ({ variable: name });
  for (const entry of parse(line, variableMarker as unknown as (key: string) => string) as Array<ParseEntry | { variable: string }>) {
    if (typeof entry === 'string') {
      words.push(entry);
    } else if ('variable' in entry) {
      throw errors.usage(
        entry.variable
          ? `${what}: a $ variable${show(`$${entry.variable}`)} would need a shell to expand it; nothing is expanded here, so write the value itself, in single quotes if it holds a $`
          : `${what}: "$(…)" or a lone "$" would need a shell; nothing is run here, so write the value itself, in single quotes if it holds a $`,
      );
    } else if ('comment' in entry) {
      throw errors.usage(`${what}: "#" starts a comment in a shell; put it in quotes if it is part of a value`);
    } else if (entry.op === 'glob') {
      throw errors.usage(`${what}: a word with * or ?${show(entry.pattern)} would be a file pattern in a shell; put it in quotes if it is a value`);
    } else {
      throw errors.usage(`${what}: "${entry.op}" is a shell operator and is not allowed; this is one command, run without a shell`);
    }
  }
  return words;
}

function checkQuoting(line: string, what: string): void {
  let quote: '"' | "'" | undefined;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quote === "'") {
      if (ch === "'") quote = undefined;
    } else if (ch === '\\') {
      if (i === line.length - 1) throw errors.usage(`${what}: it ends with a lone backslash`);
      i++;
    } else if (ch === '`') {
      throw errors.usage(`${what}: backticks would run a command in a shell; nothing is run here, so put the value itself in single quotes`);
    } else if (quote === '"') {
      if (ch === '"') quote = undefined;
    } else if (ch === '"' || ch === "'") {
      quote = ch;
    }
  }
  if (quote) throw errors.usage(`${what}: a ${quote === '"' ? 'double' : 'single'} quote is not closed`);
}
