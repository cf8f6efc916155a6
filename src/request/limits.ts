import { errors } from '../model/errors.js';

/**
 * How large one request may be, checked in one linear pass over the raw words before anything
 * else reads them: yargs' cost grows faster than the number of words (27,000 tags took it 7-9 s,
 * during which the one event loop answered nobody), and the secret scan and the redactor also
 * grow with them. A real request is a few dozen words; these limits are far above that.
 */
export const REQUEST_LIMITS = {
  /** Tags pushed per build (each --tag word may be a comma-separated list). */
  tags: 100,
  /** --cache_from images (comma-separated lists count each image). */
  cacheFrom: 100,
  /** Occurrences of any one repeatable flag (--build_arg, --build_secret, …). */
  perFlag: 100,
  /** Words in the whole request. */
  words: 1000,
  /** Characters in the whole request (a deploy key is the largest value, a few KB). */
  chars: 512 * 1024,
} as const;

/** Flags whose values are comma-separated lists: every item counts. */
const LISTS: Record<string, number> = { tag: REQUEST_LIMITS.tags, cache_from: REQUEST_LIMITS.cacheFrom };

const tooMany = (what: string, field: string) => errors.requestTooLarge(`${what}, the most one build takes`, field);

/** Throws ETOOLARGE (exit 2, naming the flag) past REQUEST_LIMITS; never quotes a value. */
export function checkRequestSize(argv: readonly string[]): void {
  let chars = 0;
  const counts = new Map<string, number>();
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    chars += word.length;
    if (chars > REQUEST_LIMITS.chars) throw errors.requestTooLarge(`the request is longer than ${REQUEST_LIMITS.chars / 1024} KB`);
    if (!word.startsWith('-')) continue;
    const eq = word.indexOf('=');
    const name = word.slice(word.startsWith('--') ? 2 : 1, eq < 0 ? undefined : eq).replace(/-/g, '_');
    if (name.length > 64) continue;
    const value = eq >= 0 ? word.slice(eq + 1) : argv[i + 1] !== undefined && !argv[i + 1].startsWith('-') ? argv[i + 1] : '';
    const listLimit = Object.hasOwn(LISTS, name) ? LISTS[name] : undefined;
    const items = listLimit === undefined ? 1 : commas(value) + 1;
    const count = (counts.get(name) ?? 0) + items;
    counts.set(name, count);
    if (listLimit !== undefined && count > listLimit) throw tooMany(`--${name} names more than ${listLimit} ${name === 'tag' ? 'tags' : 'images'}`, name);
    if (count > REQUEST_LIMITS.perFlag) throw tooMany(`--${name} was given more than ${REQUEST_LIMITS.perFlag} times`, name);
  }
  // After the flags, whose message names the one at fault.
  if (argv.length > REQUEST_LIMITS.words) throw errors.requestTooLarge(`the request has ${argv.length} words, at most ${REQUEST_LIMITS.words}`);
}

function commas(text: string): number {
  let n = 0;
  for (let i = text.indexOf(','); i >= 0; i = text.indexOf(',', i + 1)) n++;
  return n;
}
