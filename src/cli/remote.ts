import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT_CANCELLED, EXIT_USAGE } from '../errors.js';
import type { BuildRecord } from '../service/types.js';

/** Like ssh: the server could not be reached, or refused us. */
export const EXIT_UNREACHABLE = 255;

/** Resuming a dropped stream: this many tries, waiting a little longer each time. */
const RESUME_TRIES = 8;
/** After asking the server to cancel, the exit record is waited for this long. */
const CANCEL_WAIT_MS = 30_000;

type Env = Readonly<Record<string, string | undefined>>;

/**
 * The variables that may carry a local run's secrets (SECRET_ENV in request/parse.ts, which a
 * unit test holds equal): named here so that the remote client does not load the parser and
 * yargs, which cost it a third of a second of CPU at every start.
 */
export const REMOTE_SECRET_ENV = {
  repoAuthKey: 'BUILDBOT_REPO_AUTH_KEY',
  loginCmd: 'BUILDBOT_DOCKER_LOGIN_CMD',
  loginCache: 'BUILDBOT_DOCKER_LOGIN_CACHE',
  registryUser: 'BUILDBOT_REGISTRY_USERNAME',
  registryPassword: 'BUILDBOT_REGISTRY_PASSWORD',
} as const;
const SECRET_ENV = REMOTE_SECRET_ENV;

/**
 * `buildbot.sh --server URL …the same flags…`: the build runs on a server, over its HTTP API.
 * Output records go to stdout and stderr as they come; the exit code is the build's; 255 when
 * the server cannot be reached or refuses the token (BUILDBOT_TOKEN, environment only). A
 * dropped stream resumes after the last record seen; Ctrl-C or SIGTERM cancels the build on
 * the server first.
 */
export async function remoteMain(argv: readonly string[], env: Env): Promise<number> {
  let server: URL;
  let body: Record<string, unknown>;
  try {
    ({ server, body } = splitArgs(argv, env));
  } catch (err) {
    process.stderr.write(`error: ${(err as Error).message}\n`);
    return EXIT_USAGE;
  }
  if (body.help === true) {
    const { parseBuildCommand } = await import('../request/parse.js');
    const help = (await parseBuildCommand(['--help'], {})) as { text: string };
    process.stdout.write(`${help.text}\n\nWith --server URL the build runs on that server over its HTTP API; the token is read from BUILDBOT_TOKEN.\n`);
    return 0;
  }
  const token = env.BUILDBOT_TOKEN ?? '';
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: 'application/x-ndjson' };
  const api = (path: string) => new URL(`${server.pathname.replace(/\/+$/, '')}${path}`, server);

  const client = new RemoteBuild(api, headers);
  const onSignal = () => client.interrupt();
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await client.run(body);
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

class RemoteBuild {
  private id?: string;
  private lastSeq = 0;
  private exitCode?: number;
  private interrupted = 0;
  private readonly stop = new AbortController();

  constructor(private readonly api: (path: string) => URL, private readonly headers: Record<string, string>) {}

  async run(body: Record<string, unknown>): Promise<number> {
    let response: Response;
    try {
      response = await fetch(this.api('/api/v1/builds?follow=1'), { method: 'POST', headers: this.headers, body: JSON.stringify(body), signal: this.stop.signal });
    } catch (err) {
      if (this.interrupted) return EXIT_CANCELLED;
      return unreachable(`cannot reach the server at ${this.api('/').origin}: ${reason(err)}`);
    }
    if (response.status !== 200) return this.refused(response);
    this.id = response.headers.get('x-build-id') ?? undefined;
    if (this.interrupted) void this.cancel();
    await this.read(response);
    for (let attempt = 1; this.exitCode === undefined && this.id; attempt++) {
      if (this.interrupted > 1 || attempt > RESUME_TRIES) break;
      // The stream dropped before the exit record: the build goes on on the server; resume.
      await sleep(Math.min(250 * 2 ** attempt, 5_000));
      try {
        const resumed = await fetch(this.api(`/api/v1/builds/${this.id}/events?after=${this.lastSeq}`), { headers: this.headers, signal: this.stop.signal });
        if (resumed.status !== 200) return this.refused(resumed);
        attempt = 0;
        await this.read(resumed);
      } catch (err) {
        if (this.interrupted > 1) break;
        if (attempt === RESUME_TRIES) process.stderr.write(`buildbot: lost the server while following build ${this.id}: ${reason(err)}\n`);
      }
    }
    if (this.exitCode !== undefined) return this.exitCode;
    if (this.interrupted) return EXIT_CANCELLED;
    return unreachable(`lost the server while following build ${this.id ?? '(no id)'}; it may still run there`);
  }

  /** Ctrl-C or SIGTERM: the first asks the server to cancel and waits for the end; a second leaves at once. */
  interrupt(): void {
    this.interrupted++;
    if (this.interrupted > 1) return this.stop.abort();
    if (this.id) void this.cancel();
    setTimeout(() => this.stop.abort(), CANCEL_WAIT_MS).unref();
  }

  private async cancel(): Promise<void> {
    try {
      await fetch(this.api(`/api/v1/builds/${this.id}/cancel`), { method: 'POST', headers: this.headers, signal: AbortSignal.timeout(10_000) });
    } catch (err) {
      process.stderr.write(`buildbot: could not ask the server to cancel build ${this.id}: ${reason(err)}\n`);
    }
  }

  /** Reads NDJSON records until the stream ends; output goes out as it comes. */
  private async read(response: Response): Promise<void> {
    if (!response.body) return;
    const decoder = new TextDecoder();
    let pending = '';
    try {
      for await (const chunk of response.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true });
        let start = 0;
        let newline: number;
        // Lines are cut out by position: slicing off the rest after each line copied it again.
        while ((newline = pending.indexOf('\n', start)) >= 0) {
          const line = pending.slice(start, newline);
          start = newline + 1;
          if (line.trim()) await this.show(JSON.parse(line) as BuildRecord);
        }
        pending = pending.slice(start);
      }
    } catch {
      // A dropped connection: run() resumes after the last record.
    }
  }

  private async show(record: BuildRecord): Promise<void> {
    if (record.seq <= this.lastSeq) return;
    this.lastSeq = record.seq;
    if (record.type === 'output') await write(record.stream === 'stderr' ? process.stderr : process.stdout, record.data);
    else if (record.type === 'queued') {
      await write(process.stdout, record.waiting_for === 'service' ? 'another build of this service is running; waiting for it to finish\n' : `queued: ${record.place} in line\n`);
    }
    else if (record.type === 'cut') await write(process.stderr, `[buildbot: ${record.bytes} bytes of output were left out here]\n`);
    else if (record.type === 'exit') this.exitCode = record.code;
  }

  /** A refusal before the build started: the server's error, in command-line terms. */
  private async refused(response: Response): Promise<number> {
    let error: { code?: string; message?: string; field?: string | null } = {};
    try {
      error = ((await response.json()) as { error?: typeof error }).error ?? {};
    } catch {
      // not our API's error body
    }
    const field = error.field ?? undefined;
    let message = error.message ?? `the server answered ${response.status} ${response.statusText}`;
    if (field) message = message.split(`"${field}"`).join(`--${field === 'tags' ? 'tag' : field}`);
    if (response.status === 401) message += '; set BUILDBOT_TOKEN to a token of that server';
    process.stderr.write(`error: ${message}\n`);
    return response.status === 400 ? EXIT_USAGE : EXIT_UNREACHABLE;
  }
}

/**
 * The command line as the API's JSON body: `--name value` (or `--name=value`) becomes
 * "name": value, repeated flags an array, `--tag` the "tags" array, a flag without a value
 * true. Secrets may come from the same variables as for a local run, keeping them off argv.
 */
export function splitArgs(argv: readonly string[], env: Env): { server: URL; body: Record<string, unknown> } {
  let serverText: string | undefined;
  const body: Record<string, unknown> = {};
  for (let i = 0; i < argv.length; i++) {
    const word = argv[i];
    const match = /^--?([A-Za-z][\w-]*)(?:=(.*))?$/s.exec(word);
    if (!match) throw new Error(`unexpected argument "${word.length > 40 ? `${word.slice(0, 40)}…` : word}"; every value goes after its flag, e.g. --tag 1.0`);
    const name = match[1] === 'h' ? 'help' : match[1];
    let value: unknown = match[2];
    if (value === undefined) value = i + 1 < argv.length && !argv[i + 1].startsWith('--') ? argv[++i] : true;
    if (name === 'server') {
      if (serverText !== undefined) throw new Error('--server was given more than once');
      serverText = String(value);
      continue;
    }
    const key = name === 'tag' ? 'tags' : name;
    if (key === 'tags') body.tags = [...((body.tags as string[] | undefined) ?? []), ...String(value).split(',')];
    else if (key in body) body[key] = [...(Array.isArray(body[key]) ? (body[key] as unknown[]) : [body[key]]), value];
    else body[key] = value;
  }
  const fromEnv: Array<[string, string]> = [['repo_auth_key', SECRET_ENV.repoAuthKey], ['docker_login_cmd', SECRET_ENV.loginCmd], ['docker_login_cache', SECRET_ENV.loginCache]];
  for (const [key, variable] of fromEnv) if (body[key] === undefined && env[variable]) body[key] = env[variable];
  if (body.docker_login_cmd === undefined && body.docker_login_cache === undefined && env[SECRET_ENV.registryPassword] && env[SECRET_ENV.registryUser]) {
    body.docker_login_cache = Buffer.from(`${env[SECRET_ENV.registryUser]}:${env[SECRET_ENV.registryPassword]}`).toString('base64');
  }
  let server: URL;
  try {
    server = new URL(serverText ?? '');
  } catch {
    throw new Error('--server needs the URL of a buildbot server\'s HTTP API, e.g. --server https://buildbot.example.com:8080');
  }
  if ((server.protocol !== 'http:' && server.protocol !== 'https:') || server.username || server.password) {
    throw new Error('--server must be an http:// or https:// URL without credentials; the token goes in BUILDBOT_TOKEN');
  }
  return { server, body };
}

function unreachable(message: string): number {
  process.stderr.write(`error: ${message}\n`);
  return EXIT_UNREACHABLE;
}

function reason(err: unknown): string {
  const cause = (err as { cause?: { code?: string; message?: string } }).cause;
  return cause?.code ?? cause?.message ?? (err as Error).message;
}

function write(stream: NodeJS.WriteStream, text: string): Promise<void> {
  if (stream.write(text)) return Promise.resolve();
  return new Promise((resolve) => stream.once('drain', () => resolve()));
}
