import { BuildError, errors, EXIT_USAGE, isBuildError } from '../model/errors.js';
import type { ServerLog } from '../log/server-log.js';
import { parseBuildCommand, SECRET_ENV } from '../request/parse.js';
import { secretsInRawArguments } from '../request/raw-secrets.js';
import type { BuildRequest } from '../request/types.js';
import { validateRevision } from '../request/validate.js';
import type { Build } from '../service/build.js';
import type { BuildService } from '../service/service.js';
import type { BuildTrigger, BuildSummary } from '../model/build.js';
import { StatusReporter, type BuildState } from '../forges/statuses.js';
import { Deliveries } from './deliveries.js';
import { FORGES, type Forge } from '../forges/types.js';
import { loadProjectsFile, projectsError, type Project, type ProjectsFile } from './file.js';
import { isValidTag, mapRef, renderTags, UNKNOWN_SHA, type RefMapping } from './tags.js';

type Env = Readonly<Record<string, string | undefined>>;

/** What starts a project's build: a ref (and, from a webhook, the commit it points at). */
export interface ProjectBuildAsk {
  /** What the checkout is given: a branch, a tag, a commit, or a tag object id. */
  revision: string;
  /** Known when the forge said which commit it is; otherwise the checkout finds it. */
  commit?: string;
  mapping?: RefMapping;
  /** Tags that override the mapping (on demand). */
  tags?: string[];
  source: 'webhook' | 'project';
  trigger: BuildTrigger;
  /** A webhook's forge gets the statuses; a build on demand posts to every forge with a status token. */
  forge?: Forge;
}

interface Live {
  project: Project;
  templates: string[];
  values: Record<string, string>;
  forges: Forge[];
  /** The commit statuses go to, once known. */
  commit?: string;
  started: boolean;
}

/**
 * Builds of the projects file (issue 21): turns a project and a ref into a request for the
 * build service, finishes the tags once the commit is known, and reports each build's
 * progress to the forges as commit statuses. The fronts (HTTP API, webhooks, SSH) only
 * translate into start().
 */
export class ProjectBuilds {
  private current: ProjectsFile;
  readonly deliveries: Deliveries;
  readonly statuses: StatusReporter;
  private readonly live = new Map<string, Live>();

  private constructor(
    current: ProjectsFile,
    private readonly env: Env,
    private readonly service: BuildService,
    private readonly log: ServerLog,
    /** Where users reach the monitor: links in statuses and answers. */
    public publicUrl: string,
    workDir: string,
  ) {
    this.current = current;
    this.deliveries = new Deliveries(workDir, log);
    this.statuses = new StatusReporter(workDir, log);
    service.observe({
      checkedOut: (build, commit) => this.checkedOut(build, commit),
      record: (build, record) => {
        const live = this.live.get(build.id);
        if (!live) return;
        if (record.type === 'step' && record.phase === 'start' && !live.started) {
          live.started = true;
          if (live.commit) this.report(build, live, 'running');
        } else if (record.type === 'exit') {
          this.live.delete(build.id);
          if (live.commit) this.report(build, live, finalState(build.summary), describeEnd(build.summary));
        }
      },
    });
  }

  static async open(file: string, env: Env, service: BuildService, log: ServerLog, publicUrl: string, workDir: string): Promise<ProjectBuilds> {
    const loaded = await checkProjects(file, env);
    for (const warning of loaded.warnings) log('projects-warning', { file, warning });
    log('projects-loaded', { file, projects: loaded.projects.size });
    return new ProjectBuilds(loaded, env, service, log, publicUrl.replace(/\/+$/, ''), workDir);
  }

  /**
   * Builds that were abandoned (their server died while they ran) got a pending status and
   * never a final one: they get `error` now, so the forge does not show them pending for ever.
   */
  reportAbandoned(summaries: readonly BuildSummary[]): void {
    for (const summary of summaries) {
      if (summary.status !== 'abandoned' || !summary.trigger) continue;
      const delivered = this.statuses.of(summary.id);
      const last = delivered.at(-1);
      if (!last || !['pending', 'running'].includes(last.state)) continue;
      const project = this.get(summary.trigger.project);
      for (const forge of new Set(delivered.map((d) => d.forge))) {
        const hook = project?.webhooks[forge];
        if (hook?.status) this.statuses.post(summary.id, forge, hook, last.sha, 'error', this.buildUrl(summary.id), 'abandoned: the build server stopped while it ran; build it again');
      }
    }
  }

  /** SIGHUP: the file again; a file with an error keeps the old one. */
  async reload(): Promise<boolean> {
    try {
      const loaded = await checkProjects(this.current.file, this.env);
      for (const warning of loaded.warnings) this.log('projects-warning', { file: loaded.file, warning });
      this.current = loaded;
      this.log('projects-reloaded', { file: loaded.file, projects: loaded.projects.size });
      return true;
    } catch (err) {
      const message = isBuildError(err) ? err.message : 'unexpected failure; the old projects stay';
      this.log('projects-reload-failed', { file: this.current.file, error: message, kept: this.current.projects.size });
      if (!isBuildError(err)) this.log('projects-internal-error', { stack: (err as Error).stack ?? String(err) });
      return false;
    }
  }

  get(name: string): Project | undefined {
    return this.current.projects.get(name);
  }

  all(): Project[] {
    return [...this.current.projects.values()];
  }

  /** Every secret of the file, for a front's redaction. */
  get secrets(): string[] {
    return this.current.secrets;
  }

  buildUrl(id: string): string {
    return `${this.publicUrl}/builds/${id}`;
  }

  /**
   * A build on demand: `ref` is a branch, a tag or a commit id. The tags are the mapping's for
   * a branch or tag the file maps, or `tags` when given; a ref without either is refused.
   */
  async onDemand(name: string, ref: string, tags: string[] | undefined, via: 'http' | 'ssh' | 'monitor'): Promise<Build> {
    const project = this.get(name);
    if (!project) throw new BuildError('ENOPROJECT', `no project "${/^[\w.-]{1,128}$/.test(name) ? name : '…'}" in the projects file; GET /api/v1/projects lists them`, EXIT_USAGE, { field: 'project' });
    validateRevision(ref);
    const bare = ref.replace(/^refs\/(heads|tags)\//, '');
    const mapping = ref.startsWith('refs/tags/')
      ? mapRef(project, 'tag', bare)
      : ref.startsWith('refs/heads/') ? mapRef(project, 'branch', bare) : mapRef(project, 'branch', bare) ?? mapRef(project, 'tag', bare);
    if (!mapping && !tags?.length) {
      throw new BuildError('ENOMAPPING', `project ${name} maps no tags for "${bare}" (no on_branch entry or on_tag pattern matches it); give the tags to push with it`, EXIT_USAGE, { field: 'tags' });
    }
    const commit = /^[0-9a-f]{40}$/.test(bare) ? bare : undefined;
    return this.start(project, { revision: bare, commit, mapping, tags, source: 'project', trigger: { project: name, ref: bare, via } });
  }

  /** Queues a build of a project; the answer does not wait for it. */
  async start(project: Project, ask: ProjectBuildAsk): Promise<Build> {
    const templates = ask.tags?.length ? ask.tags : ask.mapping!.templates;
    const values = ask.mapping?.values ?? {};
    const request = await requestFor(project, ask.revision, renderTags(templates, values, ask.commit), this.secrets);
    const forges = ask.forge ? [ask.forge] : FORGES.filter((f) => project.webhooks[f]?.status);
    const build = this.service.submit(request, ask.source, ask.trigger);
    const live: Live = { project, templates, values, forges: forges.filter((f) => project.webhooks[f]?.status), commit: ask.commit, started: false };
    this.live.set(build.id, live);
    // The tags that wait for the commit are said now, with the build's own id in the log.
    if (!ask.commit && renderTags(templates, values).some((t) => t.includes(UNKNOWN_SHA.slice(0, 7)))) this.log('project-tags-wait', { build: build.id, project: project.name });
    if (live.commit) this.report(build, live, 'pending');
    return build;
  }

  private checkedOut(build: Build, commit: string): void {
    const live = this.live.get(build.id);
    if (!live) return;
    const tags = renderTags(live.templates, live.values, commit);
    if (tags.every(isValidTag)) {
      // The pipeline reads the tags from here on (VERSION, the image, the push).
      build.request.tags.splice(0, build.request.tags.length, ...tags);
      build.summary.tags = [...tags];
    }
    if (!live.commit) {
      // A Gitea tag push names the tag object: statuses go to the commit it peels to.
      live.commit = commit;
      this.report(build, live, 'pending');
      if (live.started) this.report(build, live, 'running');
    }
  }

  private report(build: Build, live: Live, state: BuildState, description = describe(state, build.summary)): void {
    for (const forge of live.forges) {
      const hook = live.project.webhooks[forge]!;
      this.statuses.post(build.id, forge, hook, live.commit!, state, this.buildUrl(build.id), description);
    }
  }
}

/** Loads the file and checks that every project makes a valid request (as --check-projects does). */
export async function checkProjects(file: string, env: Env): Promise<ProjectsFile> {
  const loaded = loadProjectsFile(file, env);
  for (const project of loaded.projects.values()) {
    const templates = project.onBranch[0]?.tags ?? project.onTag?.tags ?? ['latest'];
    const sample = renderTags(templates, { branch: 'main', tag: 'v1.0.0' }).map((t) => t.replace(/\{[^{}]*\}/g, 'x'));
    try {
      await requestFor(project, 'main', sample, loaded.secrets);
    } catch (err) {
      if (!isBuildError(err)) throw err;
      // The request's own checks speak in flags: here they are the project's keys.
      const message = err.message.replace(/--([a-z_]+)/g, (_, flag: string) => (flag === 'tag' ? 'a tag' : flag === 'revision' ? 'ref' : flag));
      throw projectsError(file, undefined, `projects.${project.name}`, message);
    }
  }
  return loaded;
}

/** The project as buildbot.sh arguments, through the same parser and checks as every request. */
async function requestFor(project: Project, revision: string, tags: string[], fileSecrets: string[]): Promise<BuildRequest> {
  const argv = ['--service_id', project.name, '--repo', project.repo, '--revision', revision, '--image', project.image];
  if (project.vcs) argv.push('--vcs', project.vcs);
  for (const tag of tags) argv.push('--tag', tag);
  const b = project.build;
  for (const [name, value] of Object.entries(b.buildArgs)) argv.push('--build_arg', `${name}=${value}`);
  for (const [id, value] of Object.entries(b.buildSecrets)) argv.push('--build_secret', `${id}=${value}`);
  if (b.target) argv.push('--target', b.target);
  if (b.dockerfile) argv.push('--dockerfile', b.dockerfile);
  if (b.platform) argv.push('--platform', b.platform);
  if (b.pull) argv.push('--pull');
  if (b.noCache) argv.push('--no_cache');
  for (const image of b.cacheFrom) argv.push('--cache_from', image);
  if (b.timeout) argv.push('--timeout', String(b.timeout));
  // The secrets travel as the local command's variables do: never as words a message could quote.
  const env: Record<string, string> = {};
  if (project.repoAuthKey) env[SECRET_ENV.repoAuthKey] = project.repoAuthKey;
  if (project.dockerLoginCmd) env[SECRET_ENV.loginCmd] = project.dockerLoginCmd;
  if (project.dockerLoginCache) env[SECRET_ENV.loginCache] = project.dockerLoginCache;
  const parsed = await parseBuildCommand(argv, env);
  if (parsed.kind !== 'build') throw errors.usage('unexpected help request');
  parsed.request.secrets.push(...secretsInRawArguments(argv, env), ...fileSecrets);
  return parsed.request;
}

function finalState(summary: BuildSummary): BuildState {
  if (summary.status === 'succeeded') return 'success';
  if (summary.status === 'cancelled') return 'cancelled';
  if (summary.status === 'failed' && !INFRASTRUCTURE.has(summary.error?.code ?? 'EINTERNAL')) return 'failure';
  return 'error';
}

/** Failures of the machinery rather than of the commit: the forge shows them as errors. */
const INFRASTRUCTURE = new Set(['EENGINE', 'EENGINELOST', 'EREPOUNREACHABLE', 'EREGISTRYUNREACHABLE', 'ESTALLED', 'ENOSPC', 'EWORKDIR', 'EINTERNAL', 'EHOSTKEYCHANGED']);

function describe(state: BuildState, summary: BuildSummary): string {
  return state === 'running' ? `building ${summary.tags.join(', ')}` : `queued: ${summary.image}:${summary.tags[0] ?? ''}`;
}

function describeEnd(summary: BuildSummary): string {
  if (summary.status === 'succeeded') return `pushed ${summary.image}:${summary.tags.join(', ')} in ${summary.duration ?? 0} s`;
  if (summary.status === 'cancelled') return 'cancelled';
  return summary.error ? `${summary.error.code}: ${summary.error.message}` : `${summary.status} with exit code ${summary.exit_code}`;
}
