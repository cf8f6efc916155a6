
/** Placeholders every tag template may use; on_branch adds {branch}, on_tag {tag} and the pattern's groups. */
export const TAG_PLACEHOLDERS = ['sha', 'short_sha'];

/** Git allows longer ref names, but no forge sends one past this; longer ones are not matched at all. */
export const MAX_REF_NAME = 255;
/** Stands for the commit until the checkout knows it: hex, so a tag valid with it is valid with the real one. */
export const UNKNOWN_SHA = '0'.repeat(40);

const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

export const placeholdersOf = (template: string) => [...template.matchAll(/\{([^{}]{1,64})\}/g)].map((m) => m[1]);

/** Any text as a valid Docker tag: other characters become "-", a leading "." or "-" goes, at most 128. */
export function dockerTagOf(text: string): string {
  const tag = text.replace(/[^A-Za-z0-9_.-]/g, '-').replace(/^[.-]+/, '').slice(0, 128);
  return tag || 'x';
}

export function validateGlob(glob: string): string | undefined {
  if (!glob || glob.length > MAX_REF_NAME) return `a branch name or glob is 1 to ${MAX_REF_NAME} characters`;
  if (/[\x00-\x20\x7f~^:?[\\]/.test(glob)) return 'a branch glob holds only a branch name\'s characters and "*" (any run of characters but "/") or "**" (anything)';
  return undefined;
}

/**
 * Whether a branch matches a glob: `*` any run without "/", `**` any run at all. Dynamic
 * programming over (glob position, name position): its cost is the product of the lengths,
 * never exponential, whatever a pusher names a branch.
 */
export function globMatches(glob: string, name: string): boolean {
  if (name.length > MAX_REF_NAME) return false;
  const parts: Array<'*' | '**' | string> = [];
  for (let i = 0; i < glob.length;) {
    if (glob.startsWith('**', i)) [parts[parts.length], i] = ['**', i + 2];
    else if (glob[i] === '*') [parts[parts.length], i] = ['*', i + 1];
    else [parts[parts.length], i] = [glob[i], i + 1];
  }
  // reach[j]: the first k parts can match name[0..j).
  let reach = new Array<boolean>(name.length + 1).fill(false);
  reach[0] = true;
  for (const part of parts) {
    const next = new Array<boolean>(name.length + 1).fill(false);
    for (let j = 0; j <= name.length; j++) {
      if (part === '*' || part === '**') {
        if (reach[j] || (j > 0 && next[j - 1] && (part === '**' || name[j - 1] !== '/'))) next[j] = true;
      } else if (j > 0 && reach[j - 1] && name[j - 1] === part) {
        next[j] = true;
      }
    }
    reach = next;
  }
  return reach[name.length];
}

/** The operator's tag pattern; a tag name it runs on is at most MAX_REF_NAME characters. */
export function validatePattern(source: string): RegExp {
  try {
    return new RegExp(source, 'u');
  } catch {
    throw new Error('is not a valid regular expression (JavaScript syntax; named groups as (?<name>…))');
  }
}

export interface RefMapping {
  kind: 'branch' | 'tag';
  /** The branch or tag name. */
  name: string;
  /** Tag templates and the values known now ({sha} comes with the commit). */
  templates: string[];
  values: Record<string, string>;
}

/** What a ref builds: the first on_branch entry that matches a branch, or on_tag for a tag; undefined: nothing. */
/** What mapRef needs of a project (src/projects/file.ts's Project has it). */
export interface RefRules {
  onBranch: readonly { glob: string; tags: string[] }[];
  onTag?: { pattern: RegExp; tags: string[] };
}

export function mapRef(project: RefRules, kind: 'branch' | 'tag', name: string): RefMapping | undefined {
  if (name.length > MAX_REF_NAME) return undefined;
  if (kind === 'branch') {
    // An exact name wins over a glob that also matches.
    const entry = project.onBranch.find((e) => e.glob === name) ?? project.onBranch.find((e) => globMatches(e.glob, name));
    return entry && { kind, name, templates: entry.tags, values: { branch: dockerTagOf(name) } };
  }
  if (!project.onTag) return undefined;
  const match = project.onTag.pattern.exec(name);
  if (!match) return undefined;
  const values: Record<string, string> = { tag: dockerTagOf(name) };
  for (const [group, value] of Object.entries(match.groups ?? {})) if (value !== undefined) values[group] = dockerTagOf(value);
  return { kind, name, templates: project.onTag.tags, values };
}

/** The tags for a commit (UNKNOWN_SHA until the checkout knows it); duplicates dropped, order kept. */
export function renderTags(templates: readonly string[], values: Record<string, string>, commit = UNKNOWN_SHA): string[] {
  const all: Record<string, string> = { ...values, sha: commit, short_sha: commit.slice(0, 7) };
  const tags = templates.map((t) => t.replace(/\{([^{}]{1,64})\}/g, (whole, name: string) => all[name] ?? whole));
  return [...new Set(tags)];
}

export const isValidTag = (tag: string) => TAG.test(tag);
