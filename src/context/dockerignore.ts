import { errors } from '../model/errors.js';

/*
 * .dockerignore, matched as the docker CLI matches it (moby/patternmatcher and its
 * ignorefile reader, with the walk of moby's TarWithOptions), in time linear in the input.
 *
 * Why our own: no npm package does this. @balena/dockerignore builds a JavaScript RegExp
 * escaping only "." and "$", so every other character is regex syntax (`(a+)+b` backtracks
 * for minutes on the server's one thread, `foo(` throws, `key+1.pem` matches "keyy1.pem"
 * but not itself) and it matches case-insensitively; @zeit/dockerignore is a gitignore
 * matcher. moby turns a pattern into a Go (RE2) regular expression with `.+()|{}$` quoted;
 * Go's engine is linear, JavaScript's is not, so here the same expression is compiled
 * to tokens and run as a small NFA over the path's code points. Patterns whose Go meaning
 * is easy to get wrong (`\d`, `*` or `[` inside a class, `[:alpha:]`) are refused with
 * EDOCKERIGNORE naming the line, as are the ones docker itself rejects (a bad class, a
 * trailing backslash, a lone "!"). test/fixtures/dockerignore-corpus.json holds tricky
 * cases checked against the real `DOCKER_BUILDKIT=0 docker build`.
 */

/** Most patterns read from one .dockerignore; real ones have tens. */
export const DOCKERIGNORE_MAX_PATTERNS = 10_000;
/** bufio.Scanner's limit, at which docker itself fails to read the file. */
export const DOCKERIGNORE_MAX_LINE = 64 * 1024;
/**
 * NFA steps one path may cost against all patterns (about 10 ms here). A real .dockerignore
 * needs a few thousand; beyond this the build ends with EDOCKERIGNORE instead of holding the
 * server's thread.
 */
export const STEPS_PER_PATH = 2_000_000;
/**
 * NFA steps a whole context may cost (tens of seconds of the server's CPU at most; a
 * 100,000-file context against a typical .dockerignore needs a few million).
 */
export const STEPS_PER_CONTEXT = 500_000_000;

// Go's unicode.IsSpace, which strings.TrimSpace uses (JavaScript's trim also strips U+FEFF).
const GO_SPACE = new Set([0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x20, 0x85, 0xa0, 0x1680, 0x2000, 0x2001, 0x2002, 0x2003, 0x2004, 0x2005, 0x2006, 0x2007, 0x2008, 0x2009, 0x200a, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000]);

function goTrimSpace(s: string): string {
  let start = 0;
  let end = s.length;
  while (start < end && GO_SPACE.has(s.charCodeAt(start))) start++;
  while (end > start && GO_SPACE.has(s.charCodeAt(end - 1))) end--;
  return s.slice(start, end);
}

/** Go's path.Clean for slash-separated paths. */
export function goClean(p: string): string {
  if (p === '') return '.';
  const rooted = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length && out[out.length - 1] !== '..') out.pop();
      else if (!rooted) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  return rooted ? `/${joined}` : joined || '.';
}

export interface PatternLine {
  /** 1-based line of .dockerignore, for error messages. */
  line: number;
  text: string;
}

/** ignorefile.ReadAll: comments, trimming, "!" and leading "/" handled; returns patterns with the line each came from. */
export function readDockerignore(content: string): PatternLine[] {
  const patterns: PatternLine[] = [];
  const lines = content.split('\n');
  if (lines.length && lines[lines.length - 1] === '') lines.pop();
  for (let i = 0; i < lines.length; i++) {
    let text = lines[i];
    if (text.endsWith('\r')) text = text.slice(0, -1);
    if (i === 0 && text.startsWith('\ufeff')) text = text.slice(1);
    if (text.length > DOCKERIGNORE_MAX_LINE) throw errors.dockerignore(i + 1, `it is longer than ${DOCKERIGNORE_MAX_LINE / 1024} KiB, which docker cannot read either`);
    if (text.startsWith('#')) continue;
    let pattern = goTrimSpace(text);
    if (pattern === '') continue;
    const invert = pattern[0] === '!';
    if (invert) pattern = goTrimSpace(pattern.slice(1));
    if (pattern.length > 0) {
      pattern = goClean(pattern);
      if (pattern.length > 1 && pattern[0] === '/') pattern = pattern.slice(1);
    }
    if (invert) pattern = `!${pattern}`;
    patterns.push({ line: i + 1, text: pattern });
    if (patterns.length > DOCKERIGNORE_MAX_PATTERNS) throw errors.dockerignore(i + 1, `.dockerignore has more than ${DOCKERIGNORE_MAX_PATTERNS} patterns`);
  }
  return patterns;
}

// Tokens of the Go expression moby builds; each matches one code point unless noted.
const enum T {
  Lit, // one code point
  NotSlash, // [^/]
  StarNotSlash, // [^/]*
  OptDirs, // (.*/)?
  AnyStar, // .*  (Go's "." stops at "\n")
  Start, // ^ (moby leaves it unquoted: an anchor, so it only matches at the start)
  Class, // [...] from the pattern
}
type Token =
  | { t: T.Lit; cp: number }
  | { t: T.NotSlash | T.StarNotSlash | T.OptDirs | T.AnyStar | T.Start }
  | { t: T.Class; negated: boolean; ranges: number[] };

const SLASH = 0x2f;
const NEWLINE = 0x0a;
const QUOTED = new Set([...'.+()|{}$'].map((c) => c.codePointAt(0)!));
const isAlnum = (cp: number) => (cp >= 0x30 && cp <= 0x39) || (cp >= 0x41 && cp <= 0x5a) || (cp >= 0x61 && cp <= 0x7a);

type Kind = 'exact' | 'prefix' | 'suffix' | 'regexp';
/** Steps spent so far, and the count past which matching stops. */
export interface Budget {
  steps: number;
  limit: number;
}

export class Pattern {
  readonly exclusion: boolean;
  /** moby's cleanedPattern: the pattern without "!". */
  readonly cleaned: string;
  private kind: Kind = 'exact';
  private tokens: Token[] = [];
  private literalPrefix = '';
  private literalSuffix = '';
  private literalRuns: string[] = [];
  // State sets of the NFA, reused: matching is synchronous, one path at a time.
  private current = new Uint8Array(0);
  private next = new Uint8Array(0);

  constructor(readonly line: number, text: string) {
    let p = goClean(text);
    this.exclusion = p[0] === '!';
    if (this.exclusion) {
      if (p.length === 1) throw errors.dockerignore(line, 'a "!" alone excludes nothing; docker rejects it too');
      p = p.slice(1);
    }
    this.cleaned = p;
    this.compile(line);
  }

  /** moby's Pattern.compile, step by step, producing tokens instead of a regexp string. */
  private compile(line: number): void {
    const cps = Array.from(this.cleaned, (c) => c.codePointAt(0)!);
    const bad = (why: string) => errors.dockerignore(line, why);
    let kind: Kind = 'exact';
    const tokens: Token[] = [];
    for (let at = 0, i = 0; at < cps.length; i++) {
      const ch = cps[at++];
      if (ch === 0x2a /* * */) {
        if (cps[at] === 0x2a) {
          at++;
          if (cps[at] === SLASH) at++;
          if (at >= cps.length) {
            if (kind === 'exact') kind = 'prefix';
            else {
              tokens.push({ t: T.AnyStar });
              kind = 'regexp';
            }
          } else {
            tokens.push({ t: T.OptDirs });
            kind = 'regexp';
          }
          if (i === 0) kind = 'suffix';
        } else {
          tokens.push({ t: T.StarNotSlash });
          kind = 'regexp';
        }
      } else if (ch === 0x3f /* ? */) {
        tokens.push({ t: T.NotSlash });
        kind = 'regexp';
      } else if (QUOTED.has(ch)) {
        tokens.push({ t: T.Lit, cp: ch });
      } else if (ch === 0x5c /* \ */) {
        if (at >= cps.length) throw bad('it ends with a backslash, which escapes nothing (docker rejects the pattern)');
        const next = cps[at++];
        // Go reads "\d", "\w", "\b", "\n"… as classes and escapes, filepath.Match as the letter itself.
        if (isAlnum(next)) throw bad(`"\\${String.fromCodePoint(next)}" means a letter to filepath.Match but something else to the regular expression docker builds; write the character without the backslash`);
        tokens.push({ t: T.Lit, cp: next });
        kind = 'regexp';
      } else if (ch === 0x5b /* [ */) {
        at = this.compileClass(cps, at, tokens, bad);
        kind = 'regexp';
      } else if (ch === 0x5d /* ] */) {
        tokens.push({ t: T.Lit, cp: ch });
        kind = 'regexp';
      } else if (ch === 0x5e /* ^ */) {
        tokens.push({ t: T.Start });
      } else {
        tokens.push({ t: T.Lit, cp: ch });
      }
    }
    // A "^" only acts as an anchor inside a regular expression; elsewhere moby compares text.
    this.kind = kind;
    this.tokens = kind === 'regexp' ? tokens : [];
    // The expression is anchored: a path that does not begin with its leading literals cannot match.
    let prefix = '';
    for (const tok of this.tokens) {
      if (tok.t !== T.Lit) break;
      prefix += String.fromCodePoint(tok.cp);
    }
    this.literalPrefix = prefix;
    // Every run of literals must occur in the path, in order, and the last one at its end: checked
    // with indexOf before the NFA, this turns most non-matching paths away at native speed.
    const runs: string[] = [];
    let run = '';
    for (const tok of this.tokens) {
      if (tok.t === T.Lit) run += String.fromCodePoint(tok.cp);
      else if (run) (runs.push(run), (run = ''));
    }
    if (run) runs.push(run);
    this.literalRuns = runs;
    this.literalSuffix = run;
    this.current = new Uint8Array(2 * this.tokens.length + 2);
    this.next = new Uint8Array(2 * this.tokens.length + 2);
  }

  /**
   * A character class, valid for filepath.Match (which docker checks first) and read the
   * same by Go's regexp. Returns the index after the closing "]".
   */
  private compileClass(cps: number[], at: number, tokens: Token[], bad: (why: string) => Error): number {
    let negated = false;
    if (cps[at] === 0x5e) {
      negated = true;
      at++;
    }
    const ranges: number[] = [];
    const one = (): number => {
      const c = cps[at];
      if (c === undefined || c === 0x2d /* - */ || c === 0x5d /* ] */) throw bad('a character class ([…]) is malformed: unclosed, empty, or with a misplaced "-" or "]" (docker rejects the pattern)');
      at++;
      if (c === 0x5c) {
        const next = cps[at++];
        if (next === undefined) throw bad('a character class ([…]) is not closed (docker rejects the pattern)');
        if (isAlnum(next)) throw bad(`"\\${String.fromCodePoint(next)}" in a character class means different things to filepath.Match and to docker's regular expression; write the character without the backslash`);
        return next;
      }
      if (c === 0x2a || c === 0x3f || c === 0x5b) throw bad(`"${String.fromCodePoint(c)}" inside a character class ([…]) is rewritten by docker into something else; list the characters without it`);
      return c;
    };
    for (;;) {
      if (cps[at] === 0x5d && ranges.length > 0) return (tokens.push({ t: T.Class, negated, ranges }), at + 1);
      const lo = one();
      let hi = lo;
      if (cps[at] === 0x2d) {
        at++;
        hi = one();
        if (hi < lo) throw bad('a character class has a range whose end comes before its start (docker rejects the pattern)');
      }
      ranges.push(lo, hi);
    }
  }

  /** Whether the pattern matches the whole path; `steps` counts the work for the budget. */
  match(path: string, budget: Budget): boolean {
    switch (this.kind) {
      case 'exact':
        budget.steps += 1;
        return path === this.cleaned;
      case 'prefix':
        budget.steps += 1;
        return path.startsWith(this.cleaned.slice(0, -2));
      case 'suffix': {
        budget.steps += 1;
        const suffix = this.cleaned.slice(2);
        return path.endsWith(suffix) || (suffix[0] === '/' && path === suffix.slice(1));
      }
      default:
        return this.run(path, budget);
    }
  }

  /** Thompson simulation: the set of token positions reachable, advanced one code point at a time. */
  private run(path: string, budget: Budget): boolean {
    const n = this.tokens.length;
    // The literal checks are charged too, so the context's budget also bounds files × patterns.
    budget.steps += 2 + this.literalRuns.length;
    if (!path.startsWith(this.literalPrefix) || !path.endsWith(this.literalSuffix)) return false;
    for (let i = 0, from = 0; i < this.literalRuns.length; i++) {
      const at = path.indexOf(this.literalRuns[i], from);
      if (at < 0) return false;
      from = at + this.literalRuns[i].length;
    }
    // Positions 0..n are "before token i"; n+1+i is "inside (.*/)? of token i".
    let current = this.current.fill(0);
    let next = this.next;
    let pos = 0;
    const add = (set: Uint8Array, i: number) => {
      // Epsilon closure, iteratively: each position is added once.
      while (i <= n && !set[i]) {
        set[i] = 1;
        const tok = this.tokens[i];
        if (!tok) return;
        if (tok.t === T.StarNotSlash || tok.t === T.AnyStar) i++;
        else if (tok.t === T.OptDirs) {
          set[n + 1 + i] = 1;
          i++;
        } else if (tok.t === T.Start) {
          if (pos !== 0) return;
          i++;
        } else return;
      }
    };
    add(current, 0);
    for (const ch of path) {
      const cp = ch.codePointAt(0)!;
      budget.steps += n + 1;
      // Over budget: the caller turns this into EDOCKERIGNORE.
      if (budget.steps > budget.limit) return false;
      next.fill(0);
      let any = false;
      for (let i = 0; i < n; i++) {
        if (current[n + 1 + i] && cp !== NEWLINE) {
          next[n + 1 + i] = 1;
          any = true;
        }
      }
      pos++;
      for (let i = 0; i < n; i++) {
        const tok = this.tokens[i];
        if (current[n + 1 + i] && cp === SLASH) {
          add(next, i + 1);
          any = true;
        }
        if (!current[i]) continue;
        switch (tok.t) {
          case T.Lit:
            if (cp === tok.cp) (add(next, i + 1), (any = true));
            break;
          case T.NotSlash:
            if (cp !== SLASH) (add(next, i + 1), (any = true));
            break;
          case T.StarNotSlash:
            if (cp !== SLASH) (add(next, i), (any = true));
            break;
          case T.AnyStar:
            if (cp !== NEWLINE) (add(next, i), (any = true));
            break;
          case T.Class: {
            let inside = false;
            for (let r = 0; r < tok.ranges.length; r += 2) {
              if (cp >= tok.ranges[r] && cp <= tok.ranges[r + 1]) {
                inside = true;
                break;
              }
            }
            if (inside !== tok.negated) (add(next, i + 1), (any = true));
            break;
          }
          default:
            break;
        }
      }
      if (!any) return false;
      [current, next] = [next, current];
    }
    return current[n] === 1;
  }
}

/** Per-pattern results of a directory, handed to its entries (moby's MatchInfo). */
type MatchInfo = Uint8Array | undefined;

/**
 * The patterns of one .dockerignore and the walk rules of moby's TarWithOptions:
 * MatchesUsingParentResults per path, and an excluded directory is entered only if an
 * exception pattern starts with its path.
 */
export class DockerignoreMatcher {
  readonly patterns: Pattern[];
  readonly hasExceptions: boolean;
  /** Work done so far, in NFA steps; a bench reads it. */
  readonly budget: Budget = { steps: 0, limit: Infinity };
  // The directories of the path last asked about, with their results, so a walk in order
  // computes each directory once (as moby's walk does).
  private stack: Array<{ dir: string; info: MatchInfo; skipped: boolean; pruned: boolean }> = [];

  constructor(lines: PatternLine[], private readonly contextSteps = STEPS_PER_CONTEXT) {
    this.patterns = lines.map((l) => new Pattern(l.line, l.text));
    this.hasExceptions = this.patterns.some((p) => p.exclusion);
  }

  static parse(content: string, contextSteps = STEPS_PER_CONTEXT): DockerignoreMatcher {
    return new DockerignoreMatcher(readDockerignore(content), contextSteps);
  }

  /** MatchesUsingParentResults for one path, given its parent directory's results (undefined at the top). */
  private matchOne(path: string, parent: MatchInfo): { matched: boolean; info: Uint8Array } {
    const info = new Uint8Array(this.patterns.length);
    const start = this.budget.steps;
    if (start > this.contextSteps) throw errors.dockerignoreTooCostlyInAll(this.contextSteps, path);
    this.budget.limit = start + STEPS_PER_PATH;
    let matched = false;
    for (let i = 0; i < this.patterns.length; i++) {
      const pattern = this.patterns[i];
      let match = parent ? parent[i] === 1 : false;
      if (!match) {
        if (pattern.exclusion !== matched) continue;
        match = pattern.match(path, this.budget);
        if (!match && !parent) {
          // No parent results: the parents' paths are tried (only a top-level path gets here, which has none).
          const dirs = path.split('/').slice(0, -1);
          for (let d = 1; d <= dirs.length && !match; d++) match = pattern.match(dirs.slice(0, d).join('/'), this.budget);
        }
      }
      if (this.budget.steps > this.budget.limit) throw errors.dockerignoreTooCostly(pattern.line, path);
      info[i] = match ? 1 : 0;
      if (match) matched = !pattern.exclusion;
    }
    return { matched, info };
  }

  /** Whether docker's walk would enter an excluded directory: an exception pattern starts with it. */
  mayIncludeBelow(dir: string): boolean {
    if (!this.hasExceptions) return false;
    const dirSlash = `${dir}/`;
    return this.patterns.some((p) => p.exclusion && `${p.cleaned}/`.startsWith(dirSlash));
  }

  /**
   * Whether docker leaves the path out: it is matched, or a directory above it is matched
   * and not entered. Paths are relative to the context root, "/"-separated, no trailing "/".
   */
  excludes(path: string): boolean {
    const parts = path.split('/');
    // Reuse the results of the directories this path shares with the last one asked about.
    let depth = 0;
    while (depth < this.stack.length && depth < parts.length - 1 && this.stack[depth].dir === parts.slice(0, depth + 1).join('/')) depth++;
    this.stack.length = depth;
    for (let d = depth; d < parts.length - 1; d++) {
      const dir = parts.slice(0, d + 1).join('/');
      const above = this.stack[d - 1];
      if (above?.pruned) {
        this.stack.push({ dir, info: undefined, skipped: true, pruned: true });
        continue;
      }
      const { matched, info } = this.matchOne(dir, above?.info);
      this.stack.push({ dir, info, skipped: matched, pruned: matched && !this.mayIncludeBelow(dir) });
    }
    const parent = this.stack[parts.length - 2];
    if (parent?.pruned) return true;
    return this.matchOne(path, parent?.info).matched;
  }
}
