import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ServerLog } from '../log/server-log.js';
import type { Forge, ForgeHook, StatusTarget } from './types.js';

/** What a build is at, in the project's terms; each forge has its own words for it. */
export type BuildState = 'pending' | 'running' | 'success' | 'failure' | 'error' | 'cancelled';

/** One status as it went to the forge (or did not): shown on the build's page, never a token. */
export interface StatusDelivery {
  forge: Forge;
  state: BuildState;
  /** The forge's word for it. */
  sent: string;
  sha: string;
  context: string;
  description: string;
  attempts: number;
  ok: boolean;
  /** The last HTTP status, or the network error. */
  http?: number;
  error?: string;
  at: string;
}

/** Backoff between attempts (seconds); a Retry-After the forge sends is taken instead. */
export const RETRY_DELAYS_S = [1, 2, 4, 8, 16];
const MAX_RETRY_AFTER_S = 120;
const REQUEST_TIMEOUT_MS = 10_000;
const KEEP_FILES_MS = 30 * 24 * 3600 * 1000;
export const MAX_DESCRIPTION = 140;

const WORDS: Record<Forge, Partial<Record<BuildState, string>>> = {
  github: { pending: 'pending', success: 'success', failure: 'failure', error: 'error', cancelled: 'error' },
  gitea: { pending: 'pending', success: 'success', failure: 'failure', error: 'error', cancelled: 'error' },
  gitlab: { pending: 'pending', running: 'running', success: 'success', failure: 'failed', error: 'failed', cancelled: 'canceled' },
  bitbucket: { pending: 'INPROGRESS', success: 'SUCCESSFUL', failure: 'FAILED', error: 'FAILED', cancelled: 'STOPPED' },
};

/** The forge's status API call for one state. */
export function statusRequest(forge: Forge, hook: ForgeHook, target: StatusTarget, sha: string, word: string, targetUrl: string, description: string): { url: string; headers: Record<string, string>; body: unknown } {
  const [owner, ...rest] = hook.repository.split('/');
  const name = rest.join('/');
  const json = { 'Content-Type': 'application/json', 'User-Agent': 'buildbot' };
  switch (forge) {
    case 'github':
      return {
        url: `${target.apiUrl}/repos/${owner}/${name}/statuses/${sha}`,
        headers: { ...json, Accept: 'application/vnd.github+json', Authorization: `Bearer ${target.token}` },
        body: { state: word, target_url: targetUrl, description, context: target.context },
      };
    case 'gitlab':
      return {
        url: `${target.apiUrl}/projects/${encodeURIComponent(hook.repository)}/statuses/${sha}`,
        headers: { ...json, 'PRIVATE-TOKEN': target.token },
        body: { state: word, target_url: targetUrl, description, name: target.context },
      };
    case 'gitea':
      return {
        url: `${target.apiUrl}/repos/${owner}/${name}/statuses/${sha}`,
        headers: { ...json, Authorization: `token ${target.token}` },
        body: { state: word, target_url: targetUrl, description, context: target.context },
      };
    case 'bitbucket':
      return {
        url: `${target.apiUrl}/repositories/${owner}/${name}/commit/${sha}/statuses/build`,
        // An access token is a bearer token; "user:app-password" is sent as Basic.
        headers: { ...json, Authorization: target.token.includes(':') ? `Basic ${Buffer.from(target.token).toString('base64')}` : `Bearer ${target.token}` },
        body: { key: target.context.slice(0, 40), state: word, url: targetUrl, description, name: target.context },
      };
  }
}

/**
 * Posts commit statuses, one build's in order (its final status waits for its pending one),
 * retrying network errors, 5xx and 429 after 1, 2, 4, 8 and 16 s (or the Retry-After asked
 * for), never a 4xx. Whatever happens, the build is not touched: the outcome is logged and
 * kept in `.hooks/statuses/<build>.json` for the build's page.
 */
export class StatusReporter {
  private readonly dir: string;
  private readonly chains = new Map<string, Promise<void>>();
  private readonly delivered = new Map<string, StatusDelivery[]>();

  constructor(workDir: string, private readonly log: ServerLog, private readonly delays = RETRY_DELAYS_S) {
    this.dir = path.join(workDir, '.hooks', 'statuses');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
    this.prune();
  }

  /** Queues one status of a build behind the ones queued before it. */
  post(build: string, forge: Forge, hook: ForgeHook, sha: string, state: BuildState, targetUrl: string, description: string): void {
    const target = hook.status;
    const word = WORDS[forge][state];
    if (!target || !word) return;
    const text = description.length > MAX_DESCRIPTION ? `${description.slice(0, MAX_DESCRIPTION - 1)}…` : description;
    const previous = this.chains.get(build) ?? Promise.resolve();
    const next = previous.then(() => this.deliver(build, forge, hook, target, sha, state, word, targetUrl, text)).catch((err: Error) => {
      this.log('status-internal-error', { build, stack: err.stack ?? String(err) });
    });
    this.chains.set(build, next);
    void next.then(() => {
      // Once a build's statuses are all sent, its file has them: memory keeps none per build.
      if (this.chains.get(build) !== next) return;
      this.chains.delete(build);
      this.delivered.delete(build);
    });
  }

  /** The statuses of a build as delivered so far (this process's, or as stored). */
  of(build: string): StatusDelivery[] {
    const live = this.delivered.get(build);
    if (live) return live;
    if (!/^[0-9a-z]{9}[0-9a-f]{8}$/.test(build)) return [];
    try {
      return JSON.parse(readFileSync(path.join(this.dir, `${build}.json`), 'utf8')) as StatusDelivery[];
    } catch {
      return [];
    }
  }

  /** Waits (at most ms) for every queued status; true when none is left. */
  async settle(ms: number): Promise<boolean> {
    const all = Promise.all([...this.chains.values()]).then(() => true);
    return Promise.race([all, sleep(ms, false)]);
  }

  private async deliver(build: string, forge: Forge, hook: ForgeHook, target: StatusTarget, sha: string, state: BuildState, word: string, targetUrl: string, description: string): Promise<void> {
    const call = statusRequest(forge, hook, target, sha, word, targetUrl, description);
    const delivery: StatusDelivery = { forge, state, sent: word, sha, context: target.context, description, attempts: 0, ok: false, at: new Date().toISOString() };
    const list = this.delivered.get(build) ?? this.of(build);
    this.delivered.set(build, list);
    list.push(delivery);
    for (;;) {
      delivery.attempts++;
      let retryAfter: number | undefined;
      let retry = false;
      try {
        const res = await fetch(call.url, { method: 'POST', headers: call.headers, body: JSON.stringify(call.body), signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS), redirect: 'error' });
        delivery.http = res.status;
        const detail = res.ok ? '' : (await res.text().catch(() => '')).slice(0, 300);
        if (res.ok) {
          delivery.ok = true;
          delete delivery.error;
        } else {
          // The forge's own words help (GitHub's 422 says why); a token it echoed would not.
          delivery.error = `HTTP ${res.status}${detail ? `: ${detail.split(target.token).join('***').replace(/\s+/g, ' ')}` : ''}`;
          retry = res.status >= 500 || res.status === 429;
          retryAfter = parseRetryAfter(res.headers.get('retry-after'));
        }
      } catch (err) {
        delete delivery.http;
        const cause = (err as Error & { cause?: Error }).cause;
        delivery.error = `${(err as Error).name === 'TimeoutError' ? `no answer within ${REQUEST_TIMEOUT_MS / 1000} s` : (cause?.message ?? (err as Error).message)}`.split(target.token).join('***');
        retry = true;
      }
      delivery.at = new Date().toISOString();
      if (delivery.ok || !retry || delivery.attempts > this.delays.length) break;
      const wait = retryAfter ?? this.delays[delivery.attempts - 1];
      this.log('status-retry', { build, forge, state: word, attempt: delivery.attempts, http: delivery.http, 'retry-in-seconds': wait });
      await sleep(wait * 1000);
    }
    this.log(delivery.ok ? 'status-posted' : 'status-failed', { build, forge, state: word, sha, attempts: delivery.attempts, http: delivery.http, error: delivery.ok ? undefined : delivery.error });
    this.save(build, list);
  }

  private save(build: string, list: StatusDelivery[]): void {
    try {
      writeFileSync(path.join(this.dir, `${build}.json`), JSON.stringify(list), { mode: 0o600 });
    } catch (err) {
      this.log('status-write-failed', { build, error: (err as Error).message });
    }
  }

  private prune(): void {
    try {
      for (const name of readdirSync(this.dir)) {
        const file = path.join(this.dir, name);
        if (Date.now() - statSync(file).mtimeMs > KEEP_FILES_MS) rmSync(file, { force: true });
      }
    } catch {
      // nothing to prune
    }
  }
}

/** Retry-After in seconds or as an HTTP date, bounded. */
function parseRetryAfter(value: string | null): number | undefined {
  if (!value) return undefined;
  const seconds = /^\d{1,6}$/.test(value.trim()) ? Number(value.trim()) : (Date.parse(value) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(Math.max(Math.ceil(seconds), 0), MAX_RETRY_AFTER_S);
}
