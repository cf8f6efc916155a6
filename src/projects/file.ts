import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { isMap, isScalar, isSeq, LineCounter, parseDocument, type Node } from 'yaml';
import { BuildError, EXIT_USAGE } from '../model/errors.js';
import { isServiceId } from '../request/validate.js';
import { DEFAULT_API_URL, FORGES, type Forge, type ForgeHook, type StatusTarget } from '../forges/types.js';
import { placeholdersOf, TAG_PLACEHOLDERS, validateGlob, validatePattern } from './tags.js';

export interface Project {
  name: string;
  repo: string;
  vcs?: string;
  image: string;
  /** Secrets, read from their {env}/{file} references at load. */
  repoAuthKey?: string;
  dockerLoginCmd?: string;
  dockerLoginCache?: string;
  /** Glob (or name) -> tag templates, in file order. */
  onBranch: Array<{ glob: string; tags: string[] }>;
  onTag?: { pattern: RegExp; tags: string[] };
  build: {
    buildArgs: Record<string, string>;
    target?: string;
    dockerfile?: string;
    platform?: string;
    pull: boolean;
    noCache: boolean;
    cacheFrom: string[];
    /** Values are secrets. */
    buildSecrets: Record<string, string>;
    timeout?: number;
  };
  publicBadge: boolean;
  webhooks: Partial<Record<Forge, ForgeHook>>;
}

export interface ProjectsFile {
  file: string;
  projects: Map<string, Project>;
  /** Warnings to log (a secret file others can read). */
  warnings: string[];
  /** Every secret value the file references, for redaction. */
  secrets: string[];
}

const MAX_FILE_BYTES = 1024 * 1024;
const MAX_SECRET_BYTES = 64 * 1024;

type Env = Readonly<Record<string, string | undefined>>;

/** A problem with the projects file: exit 2, naming the file, the line and the key, never a value. */
export const projectsError = (file: string, line: number | undefined, key: string, problem: string) =>
  new BuildError('EPROJECTS', `projects file ${file}${line ? ` line ${line}` : ''}: ${key ? `${key}: ` : ''}${problem}`, EXIT_USAGE, { field: 'projects' });

/** Reads, parses and validates a projects file; every secret reference is resolved now. */
export function loadProjectsFile(file: string, env: Env): ProjectsFile {
  const text = readCapped(file, MAX_FILE_BYTES, (problem) => projectsError(file, undefined, '', problem));
  const lines = new LineCounter();
  // YAML 1.2 core schema: `yes`/`no` stay strings; JSON is valid YAML. Duplicate keys are errors.
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length) {
    const first = doc.errors[0];
    // The parser's own message may quote the source, which may hold a value: its code and line only.
    throw projectsError(file, lines.linePos(first.pos[0]).line, '', `not valid YAML (${first.code}); fix the syntax there`);
  }
  const reader = new Reader(file, lines, env);
  const root = doc.contents as Node | null;
  const top = reader.map(root, '', ['projects']);
  const projects = new Map<string, Project>();
  const projectsNode = top.get('projects');
  if (!projectsNode) throw projectsError(file, 1, 'projects', 'missing; the file holds `projects:` with one entry per project');
  for (const [name, node] of reader.entries(projectsNode.value, 'projects')) {
    if (!isServiceId(name)) throw projectsError(file, reader.lineOf(projectsNode.value, name), `projects.${safeKey(name)}`, 'a project name is 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit (it is the service id of its builds)');
    projects.set(name, reader.project(name, node));
  }
  return { file, projects, warnings: reader.warnings, secrets: reader.secrets };
}

function readCapped(file: string, max: number, fail: (problem: string) => BuildError): string {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (err) {
    throw fail(`cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
  }
  try {
    const stat = fstatSync(fd);
    if (!stat.isFile()) throw fail('is not a regular file');
    if (stat.size > max) throw fail(`is larger than ${max / 1024} KiB`);
    const buffer = Buffer.alloc(Math.min(stat.size, max) + 1);
    const n = readSync(fd, buffer, 0, buffer.length, 0);
    if (n > max) throw fail(`is larger than ${max / 1024} KiB`);
    return buffer.subarray(0, n).toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** A key shown in an error only when it has the form of a key (a misplaced secret is not echoed). */
const safeKey = (key: string) => (/^[\w.-]{1,64}$/.test(key) ? key : '(a key)');

interface Entry {
  value: Node | null;
  line: number;
}

const PROJECT_KEYS = ['repo', 'vcs', 'repo_auth_key', 'docker_login_cmd', 'docker_login_cache', 'image', 'on_branch', 'on_tag', 'build_arg', 'target', 'dockerfile', 'platform', 'pull', 'no_cache', 'cache_from', 'build_secret', 'timeout', 'public_badge', 'webhooks'];
const HOOK_KEYS = ['repository', 'project', 'secret', 'status'];
const STATUS_KEYS = ['api_url', 'token', 'context'];

/** Walks the document by path, so every error names the key and its line. */
class Reader {
  readonly warnings: string[] = [];
  readonly secrets: string[] = [];

  constructor(private readonly file: string, private readonly lines: LineCounter, private readonly env: Env) {}

  private line(node: Node | null | undefined): number | undefined {
    return node?.range ? this.lines.linePos(node.range[0]).line : undefined;
  }

  fail(node: Node | null | undefined, key: string, problem: string): never {
    throw projectsError(this.file, this.line(node), key, problem);
  }

  lineOf(map: Node | null, key: string): number | undefined {
    if (!isMap(map)) return undefined;
    const pair = map.items.find((p) => isScalar(p.key) && String(p.key.value) === key);
    return this.line(pair?.key as Node | undefined);
  }

  /** The pairs of a mapping, by key. */
  entries(node: Node | null, path: string): Array<[string, Entry]> {
    if (!isMap(node)) this.fail(node, path, 'must be a mapping (key: value lines)');
    return node.items.map((pair) => {
      const keyNode = pair.key as Node;
      if (!isScalar(keyNode) || typeof keyNode.value !== 'string' && typeof keyNode.value !== 'number') this.fail(keyNode, path, 'keys must be plain names');
      return [String(keyNode.value), { value: pair.value as Node | null, line: this.line(keyNode) ?? 0 }];
    });
  }

  /** A mapping with only the allowed keys. */
  map(node: Node | null, path: string, allowed: readonly string[]): Map<string, Entry> {
    const out = new Map<string, Entry>();
    for (const [key, entry] of this.entries(node, path || '(the file)')) {
      const at = path ? `${path}.${safeKey(key)}` : safeKey(key);
      if (!allowed.includes(key)) throw projectsError(this.file, entry.line, at, `unknown key; the keys here are ${allowed.join(', ')}`);
      out.set(key, entry);
    }
    return out;
  }

  string(entry: Entry | undefined, path: string, opts: { max?: number; rule?: RegExp; ruleText?: string } = {}): string | undefined {
    if (!entry) return undefined;
    const { value } = entry;
    if (!isScalar(value) || (typeof value.value !== 'string' && typeof value.value !== 'number')) this.fail(value, path, 'must be a string');
    const text = String(value.value);
    if (!text || text.length > (opts.max ?? 1024)) this.fail(value, path, `must be 1 to ${opts.max ?? 1024} characters`);
    if (/[\x00-\x1f\x7f]/.test(text)) this.fail(value, path, 'holds control characters');
    if (opts.rule && !opts.rule.test(text)) this.fail(value, path, opts.ruleText ?? 'has not the expected form');
    return text;
  }

  bool(entry: Entry | undefined, path: string): boolean {
    if (!entry) return false;
    if (!isScalar(entry.value) || typeof entry.value.value !== 'boolean') this.fail(entry.value, path, 'must be true or false');
    return entry.value.value;
  }

  strings(entry: Entry | undefined, path: string, max = 100): string[] {
    if (!entry) return [];
    const { value } = entry;
    if (!isSeq(value)) this.fail(value, path, 'must be a list, e.g. ["latest", "main-{short_sha}"]');
    if (value.items.length > max) this.fail(value, path, `has more than ${max} items`);
    return value.items.map((item, i) => this.string({ value: item as Node, line: 0 }, `${path}[${i}]`, { max: 255 })!);
  }

  /** `{env: NAME}` or `{file: PATH}`, read now; a value written inline is refused without being shown. */
  secret(entry: Entry | undefined, path: string): string | undefined {
    if (!entry) return undefined;
    const { value } = entry;
    if (!isMap(value)) this.fail(value, path, 'a secret is given as {env: NAME} or {file: PATH}, never written inline in this file');
    const fields = this.map(value, path, ['env', 'file']);
    if (fields.size !== 1) this.fail(value, path, 'give exactly one of env or file');
    let secret: string;
    if (fields.has('env')) {
      const name = this.string(fields.get('env'), `${path}.env`, { max: 128, rule: /^[A-Za-z_][A-Za-z0-9_]*$/, ruleText: 'must be a variable name' })!;
      const found = this.env[name];
      if (!found) this.fail(value, path, `the environment variable ${name} is not set or empty`);
      secret = found;
    } else {
      const file = this.string(fields.get('file'), `${path}.file`, { max: 4096 })!;
      if (!file.startsWith('/')) this.fail(value, `${path}.file`, 'must be an absolute path');
      secret = readCapped(file, MAX_SECRET_BYTES, (problem) => projectsError(this.file, this.line(value), path, `the secret file ${file} ${problem}`));
      try {
        const fd = openSync(file, 'r');
        const mode = fstatSync(fd).mode;
        closeSync(fd);
        if (mode & 0o004) this.warnings.push(`${path}: the secret file ${file} is readable by every user of the machine; chmod o-r it`);
      } catch {
        // read above: it exists
      }
      // A key file keeps its text; a token file loses the newline an editor added.
      if (!secret.includes('PRIVATE KEY')) secret = secret.trim();
      if (!secret) this.fail(value, path, `the secret file ${file} is empty`);
    }
    this.secrets.push(secret);
    return secret;
  }

  project(name: string, node: Entry): Project {
    const at = `projects.${name}`;
    const keys = this.map(node.value, at, PROJECT_KEYS);
    const need = (key: string) => {
      if (!keys.has(key)) throw projectsError(this.file, node.line, `${at}.${key}`, 'missing; every project names its repo and image');
      return keys.get(key);
    };
    const onBranch: Project['onBranch'] = [];
    const branchNode = keys.get('on_branch');
    if (branchNode) {
      for (const [glob, entry] of this.entries(branchNode.value, `${at}.on_branch`)) {
        const path = `${at}.on_branch.${safeKey(glob)}`;
        const problem = validateGlob(glob);
        if (problem) throw projectsError(this.file, entry.line, path, problem);
        const tags = this.strings(entry, path);
        if (!tags.length) throw projectsError(this.file, entry.line, path, 'give at least one tag');
        this.templates(tags, path, entry, ['branch', ...TAG_PLACEHOLDERS]);
        onBranch.push({ glob, tags });
      }
    }
    let onTag: Project['onTag'];
    const tagNode = keys.get('on_tag');
    if (tagNode) {
      const fields = this.map(tagNode.value, `${at}.on_tag`, ['pattern', 'tags']);
      const source = this.string(fields.get('pattern'), `${at}.on_tag.pattern`, { max: 512 }) ?? '^(?<tag>.+)$';
      let pattern: RegExp;
      try {
        pattern = validatePattern(source);
      } catch (err) {
        this.fail(fields.get('pattern')!.value, `${at}.on_tag.pattern`, (err as Error).message);
      }
      const tags = this.strings(fields.get('tags'), `${at}.on_tag.tags`);
      if (!tags.length) this.fail(tagNode.value, `${at}.on_tag.tags`, 'give at least one tag, e.g. ["{tag}"]');
      this.templates(tags, `${at}.on_tag.tags`, fields.get('tags')!, ['tag', ...TAG_PLACEHOLDERS, ...groupNames(source)]);
      onTag = { pattern, tags };
    }
    const buildArgs: Record<string, string> = {};
    const argNode = keys.get('build_arg');
    if (argNode) {
      for (const [argName, entry] of this.entries(argNode.value, `${at}.build_arg`)) {
        buildArgs[argName] = this.string(entry, `${at}.build_arg.${safeKey(argName)}`, { max: 64 * 1024 }) ?? '';
      }
    }
    const buildSecrets: Record<string, string> = {};
    const secretNode = keys.get('build_secret');
    if (secretNode) {
      for (const [id, entry] of this.entries(secretNode.value, `${at}.build_secret`)) {
        buildSecrets[id] = this.secret(entry, `${at}.build_secret.${safeKey(id)}`)!;
      }
    }
    const timeoutText = keys.has('timeout') ? this.string(keys.get('timeout'), `${at}.timeout`, { max: 7, rule: /^[1-9]\d*$/, ruleText: 'must be a positive whole number of seconds' }) : undefined;
    const webhooks: Project['webhooks'] = {};
    const hooksNode = keys.get('webhooks');
    if (hooksNode) {
      for (const [forge, entry] of this.entries(hooksNode.value, `${at}.webhooks`)) {
        if (!(FORGES as readonly string[]).includes(forge)) throw projectsError(this.file, entry.line, `${at}.webhooks.${safeKey(forge)}`, `unknown forge; the forges are ${FORGES.join(', ')}`);
        webhooks[forge as Forge] = this.hook(forge as Forge, entry, `${at}.webhooks.${forge}`, name);
      }
    }
    return {
      name,
      repo: this.string(need('repo'), `${at}.repo`)!,
      vcs: this.string(keys.get('vcs'), `${at}.vcs`, { rule: /^(git|hg)$/, ruleText: 'must be git or hg' }),
      image: this.string(need('image'), `${at}.image`, { max: 255 })!,
      repoAuthKey: this.secret(keys.get('repo_auth_key'), `${at}.repo_auth_key`),
      dockerLoginCmd: this.secret(keys.get('docker_login_cmd'), `${at}.docker_login_cmd`),
      dockerLoginCache: this.secret(keys.get('docker_login_cache'), `${at}.docker_login_cache`),
      onBranch,
      onTag,
      build: {
        buildArgs,
        target: this.string(keys.get('target'), `${at}.target`, { max: 128 }),
        dockerfile: this.string(keys.get('dockerfile'), `${at}.dockerfile`, { max: 255 }),
        platform: this.string(keys.get('platform'), `${at}.platform`, { max: 100 }),
        pull: this.bool(keys.get('pull'), `${at}.pull`),
        noCache: this.bool(keys.get('no_cache'), `${at}.no_cache`),
        cacheFrom: this.strings(keys.get('cache_from'), `${at}.cache_from`),
        buildSecrets,
        timeout: timeoutText === undefined ? undefined : Number(timeoutText),
      },
      publicBadge: this.bool(keys.get('public_badge'), `${at}.public_badge`),
      webhooks,
    };
  }

  private templates(tags: string[], path: string, entry: Entry, known: string[]): void {
    for (const tag of tags) {
      for (const name of placeholdersOf(tag)) {
        if (!known.includes(name)) throw projectsError(this.file, entry.line, path, `unknown placeholder {${safeKey(name)}}; the placeholders here are ${known.map((k) => `{${k}}`).join(', ')}`);
      }
    }
  }

  private hook(forge: Forge, entry: Entry, path: string, project: string): ForgeHook {
    const keys = this.map(entry.value, path, HOOK_KEYS);
    const repoKey = forge === 'gitlab' ? 'project' : 'repository';
    const other = forge === 'gitlab' ? 'repository' : 'project';
    if (keys.has(other)) throw projectsError(this.file, keys.get(other)!.line, `${path}.${other}`, `unknown key for ${forge}; it names its repository with ${repoKey}`);
    if (!keys.has(repoKey)) throw projectsError(this.file, entry.line, `${path}.${repoKey}`, `missing; the ${forge} ${forge === 'gitlab' ? 'project path' : 'repository'} whose events build this project, e.g. acme/site`);
    if (!keys.has('secret')) throw projectsError(this.file, entry.line, `${path}.secret`, 'missing; the webhook secret set on the forge, as {env: NAME} or {file: PATH}');
    const repository = this.string(keys.get(repoKey), `${path}.${repoKey}`, { max: 255, rule: /^[\w.-]+(\/[\w.-]+)+$/, ruleText: 'must be a path like owner/name' })!;
    const secret = this.secret(keys.get('secret'), `${path}.secret`)!;
    let status: StatusTarget | undefined;
    const statusNode = keys.get('status');
    if (statusNode) {
      const fields = this.map(statusNode.value, `${path}.status`, STATUS_KEYS);
      if (!fields.has('token')) throw projectsError(this.file, statusNode.line, `${path}.status.token`, `missing; a ${forge} token that may post commit statuses, as {env: NAME} or {file: PATH}`);
      const apiUrl = this.string(fields.get('api_url'), `${path}.status.api_url`, { rule: /^https?:\/\/[^\s@/]+(\/\S*)?$/, ruleText: 'must be an http(s) URL without credentials' }) ?? DEFAULT_API_URL[forge];
      status = {
        apiUrl: apiUrl.replace(/\/+$/, ''),
        token: this.secret(fields.get('token'), `${path}.status.token`)!,
        context: this.string(fields.get('context'), `${path}.status.context`, { max: forge === 'bitbucket' ? 40 : 255 }) ?? `buildbot/${project}`,
      };
    }
    return { repository, secret, status };
  }
}

const groupNames = (source: string) => [...source.matchAll(/\(\?<([A-Za-z_][A-Za-z0-9_]*)>/g)].map((m) => m[1]);
