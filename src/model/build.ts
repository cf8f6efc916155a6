/**
 * What the build service tells about builds. The record shapes and names are the HTTP API's
 * contract (README "HTTP API"): clients and the web monitor depend on them.
 */

export type BuildStatus = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled' | 'abandoned';
export type BuildSource = 'ssh' | 'http' | 'local' | 'webhook' | 'project';

/** How a build of a configured project started (src/projects/): never a secret. */
export interface BuildTrigger {
  project: string;
  /** The ref asked for or pushed: a branch, a tag or a commit. */
  ref: string;
  /** 'project': over which front it was asked for. */
  via?: 'http' | 'ssh' | 'monitor';
  forge?: string;
  delivery?: string;
  pusher?: string;
}
export type OutputStream = 'stdout' | 'stderr';

export const FINAL_STATUSES: readonly BuildStatus[] = ['succeeded', 'failed', 'cancelled', 'abandoned'];
export const isFinal = (status: BuildStatus) => FINAL_STATUSES.includes(status);

interface RecordBase {
  /** 1, 2, 3 … per build. */
  seq: number;
  /** ISO 8601. */
  time: string;
}

/** Output of the build, already redacted: joining every record's data gives the raw log. */
export interface OutputRecord extends RecordBase {
  type: 'output';
  stream: OutputStream;
  data: string;
}

export interface StepRecord extends RecordBase {
  type: 'step';
  name: string;
  phase: 'start' | 'end';
  /** On 'end': seconds the step took, and whether it succeeded. */
  duration?: number;
  ok?: boolean;
}

/** The build waits: for a build slot (place in line, 1 = next) or for another build of its service. */
export interface QueuedRecord extends RecordBase {
  type: 'queued';
  place: number;
  waiting_for: 'slot' | 'service';
}

/** Stands where output was left out of a stored log that outgrew its cap. */
export interface CutRecord extends RecordBase {
  type: 'cut';
  bytes: number;
  records: number;
}

/**
 * The last record of every build. `code` is null only for an abandoned build: its process died
 * while it ran, so no exit code exists (a made-up one would read as the build's own).
 */
export interface ExitRecord extends RecordBase {
  type: 'exit';
  code: number | null;
  status: BuildStatus;
}

export type BuildRecord = OutputRecord | StepRecord | QueuedRecord | CutRecord | ExitRecord;

export interface StepSummary {
  name: string;
  started_at: string;
  /** Seconds; absent while the step runs. */
  duration?: number;
  ok?: boolean;
}

/** What GET /api/v1/builds/{id} answers, and what history stores per build. */
export interface BuildSummary {
  id: string;
  service_id: string;
  repo: string;
  revision: string;
  /** The commit the revision resolved to, once checked out. */
  commit?: string;
  image: string;
  tags: string[];
  status: BuildStatus;
  exit_code: number | null;
  source: BuildSource;
  /** For a webhook or project build: the project, the ref, and the forge, delivery and pusher of a webhook. */
  trigger?: BuildTrigger;
  created_at: string;
  started_at?: string;
  /** The engine it was placed on (its --engine name; `default` without --engine), once it leaves the line. */
  engine?: string;
  finished_at?: string;
  /** Seconds from start to end. */
  duration?: number;
  steps: StepSummary[];
  digest?: string;
  error?: { code: string; message: string };
  /** Output bytes by stream, and how many were left out of the stored log. */
  output_bytes: { stdout: number; stderr: number };
  log_cut_bytes?: number;
  /** Commit statuses posted for it (src/forges/statuses.ts): added where a build is shown, not stored here. */
  commit_statuses?: Array<{ forge: string; state: string; sent: string; sha: string; context: string; description: string; attempts: number; ok: boolean; http?: number; error?: string; at: string }>;
  /** Which process ran it: a build whose process is gone is abandoned. */
  host: string;
  pid: number;
}
