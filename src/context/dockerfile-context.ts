/**
 * What of the build context a Dockerfile can read: the top-level names of /project its COPY and
 * ADD lines name, so that only those are moved out of the builder for the image step (a Dockerfile
 * that copies `out/` then costs what `out/` holds, not what the whole tree holds). Whenever the
 * answer is not certain the whole context goes, as before: the reason says why.
 *
 * Certain means: no parser directive but a plain `# syntax` absent (a custom frontend may read
 * anything; another escape character changes the parsing), no heredocs, no variables in a source,
 * no glob characters in a source's first part, no `..`, no RUN --mount (a bind mount reads the
 * context), no ONBUILD line, no COPY flag this parser does not know. ONBUILD triggers of a base
 * image are the caller's to check (they need the engine).
 */
export type ContextNeeds = { names: string[]; from: string[] } | { all: string };

// COPY and ADD flags that do not change which context paths are read.
const PLAIN_FLAGS = /^--(chown|chmod|link|checksum|keep-git-dir)(=.*)?$/;
const GLOB = /[*?[\\]/;

/** The instructions of a Dockerfile: continuation lines joined, comments and empty lines dropped. */
function instructions(text: string): string[] | { all: string } {
  const lines = text.split(/\r?\n/);
  // Parser directives only at the very top, before any other line.
  for (const line of lines) {
    const directive = /^#\s*([a-zA-Z]+)\s*=/.exec(line);
    if (!directive) break;
    return { all: `the Dockerfile has a parser directive (${directive[1].toLowerCase()})` };
  }
  const out: string[] = [];
  let current = '';
  for (const raw of lines) {
    if (/^\s*#/.test(raw)) continue;
    if (/\\\s*$/.test(raw)) {
      current += `${raw.replace(/\\\s*$/, '')} `;
      continue;
    }
    current += raw;
    if (current.trim()) out.push(current.trim());
    current = '';
  }
  if (current.trim()) out.push(current.trim());
  return out;
}

/** Splits an instruction's arguments: the JSON form, or words separated by blanks. */
function argumentsOf(rest: string): string[] | undefined {
  if (rest.startsWith('[')) {
    try {
      const parsed: unknown = JSON.parse(rest);
      return Array.isArray(parsed) && parsed.every((p) => typeof p === 'string') ? parsed : undefined;
    } catch {
      return undefined;
    }
  }
  // Quotes in the plain form are taken literally by the Dockerfile parser only in some places: not certain.
  if (/["']/.test(rest)) return undefined;
  return rest.split(/\s+/).filter(Boolean);
}

/** The context's top-level names a Dockerfile can read (see the module's comment), and its FROM images (not stages). */
export function contextNeeds(text: string, dockerfile: string): ContextNeeds {
  const list = instructions(text);
  if (!Array.isArray(list)) return list;
  // The Dockerfile itself the caller sends from the text it read; .dockerignore is applied already.
  const names = new Set<string>();
  const stages = new Set<string>();
  const from: string[] = [];
  for (const line of list) {
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    const keyword = m[1].toUpperCase();
    let rest = m[2];
    if (rest.includes('<<')) return { all: `a ${keyword} line has a heredoc` };
    if (keyword === 'ONBUILD') return { all: 'the Dockerfile has an ONBUILD line' };
    if (keyword === 'RUN' && /--mount(=|\s)/.test(rest)) return { all: 'a RUN line mounts something (--mount)' };
    if (keyword === 'FROM') {
      const words = rest.split(/\s+/).filter((w) => !w.startsWith('--'));
      if (!words[0] || words[0].includes('$')) return { all: 'a FROM line names its image by a variable' };
      if (!stages.has(words[0].toLowerCase()) && words[0] !== 'scratch') from.push(words[0]);
      if (words[1]?.toLowerCase() === 'as' && words[2]) stages.add(words[2].toLowerCase());
      continue;
    }
    if (keyword !== 'COPY' && keyword !== 'ADD') continue;
    let fromStage = false;
    for (;;) {
      const flag = /^(--\S+)\s*/.exec(rest);
      if (!flag) break;
      if (flag[1].startsWith('--from=')) fromStage = true;
      else if (!PLAIN_FLAGS.test(flag[1])) return { all: `a ${keyword} line has the flag ${flag[1].split('=')[0]}` };
      rest = rest.slice(flag[0].length);
    }
    if (fromStage) continue;
    const args = argumentsOf(rest);
    if (!args || args.length < 2) return { all: `a ${keyword} line could not be read for certain` };
    for (const source of args.slice(0, -1)) {
      if (source.includes('$')) return { all: `a ${keyword} source names a variable` };
      if (keyword === 'ADD' && /^[a-z][a-z0-9+.-]*:\/\//i.test(source)) continue;
      if (/^git@/.test(source)) continue;
      const parts = source.split('/').filter((p) => p && p !== '.');
      if (parts.includes('..')) return { all: `a ${keyword} source has ".."` };
      if (!parts.length) return { all: `a ${keyword} line copies the whole context` };
      if (GLOB.test(parts[0])) return { all: `a ${keyword} source's first part has a pattern (${parts[0]})` };
      names.add(parts[0]);
    }
  }
  return { names: [...names].sort(), from };
}
