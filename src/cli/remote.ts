import http from 'node:http';
import https from 'node:https';
import { StringDecoder } from 'node:string_decoder';
import { setTimeout as sleep } from 'node:timers/promises';
import { EXIT_CANCELLED, EXIT_USAGE } from '../model/errors.js';
import { SECRET_ENV } from '../request/secret-env.js';
import type { BuildRecord } from '../model/build.js';
import { FrameReader, FRAMES_TYPE } from '../model/record-frames.js';

/** Like ssh: the server could not be reached, or refused us. */
export const EXIT_UNREACHABLE = 255;

/** Resuming a dropped stream: this many tries, waiting a little longer each time. */
const RESUME_TRIES = 8;
/** A record line longer than this is not our server's (its output records hold at most an engine read). */
const MAX_RECORD_CHARS = 16 * 1024 * 1024;
/** After asking the server to cancel, the exit record is waited for this long. */
const CANCEL_WAIT_MS = 30_000;

type Env = Readonly<Record<string, string | undefined>>;


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
  if (!token) {
    process.stderr.write('error: BUILDBOT_TOKEN is not set; export the API token the server was given with --api-token (full access): BUILDBOT_TOKEN=… buildbot.sh --server URL …\n');
    // As ssh exits without a key it may use: the server was not asked.
    return EXIT_UNREACHABLE;
  }
  // Frames: output passed on as bytes, no JSON pass over it on either side (record-frames.ts).
  const headers = { Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Accept: `${FRAMES_TYPE}, application/x-ndjson;q=0.5` };
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

/** An answer of the server: its status and headers, and its body as it comes. */
type Answer = http.IncomingMessage;

class RemoteBuild {
  private id?: string;
  private lastSeq = 0;
  private exitCode?: number;
  /** An exit record without a code: the build was abandoned (its server died while it ran). */
  private abandoned = false;
  private interrupted = 0;
  private readonly stop = new AbortController();

  constructor(private readonly api: (path: string) => URL, private readonly headers: Record<string, string>) {}

  async run(body: Record<string, unknown>): Promise<number> {
    let response: Answer;
    try {
      response = await this.request('POST', '/api/v1/builds?follow=1', JSON.stringify(body), this.stop.signal);
    } catch (err) {
      if (this.interrupted) return EXIT_CANCELLED;
      return unreachable(`cannot reach the server at ${this.api('/').origin}: ${reason(err)}`);
    }
    if (response.statusCode !== 200) return this.refused(response);
    const id = response.headers['x-build-id'];
    this.id = typeof id === 'string' ? id : undefined;
    if (this.interrupted) void this.cancel();
    await this.read(response);
    for (let attempt = 1; this.exitCode === undefined && !this.abandoned && this.id; attempt++) {
      if (this.interrupted > 1 || this.stop.signal.aborted || attempt > RESUME_TRIES) break;
      // The stream dropped before the exit record: the build goes on on the server; resume.
      await sleep(Math.min(250 * 2 ** attempt, 5_000));
      try {
        const resumed = await this.request('GET', `/api/v1/builds/${this.id}/events?after=${this.lastSeq}`, undefined, this.stop.signal);
        if (resumed.statusCode !== 200) return this.refused(resumed);
        attempt = 0;
        await this.read(resumed);
      } catch (err) {
        if (this.interrupted > 1) break;
        if (attempt === RESUME_TRIES) process.stderr.write(`buildbot: lost the server while following build ${this.id}: ${reason(err)}\n`);
      }
    }
    if (this.exitCode !== undefined) return this.exitCode;
    if (this.abandoned) return unreachable(`build ${this.id} was abandoned: the server stopped while it ran`);
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
      (await this.request('POST', `/api/v1/builds/${this.id}/cancel`, undefined, AbortSignal.timeout(10_000))).resume();
    } catch (err) {
      process.stderr.write(`buildbot: could not ask the server to cancel build ${this.id}: ${reason(err)}\n`);
    }
  }

  /**
   * One request with node:http (fetch's web streams cost this client four times ssh's CPU per
   * MB: BENCHMARKS.md, row 8). Resolves with the answer once its headers are in.
   */
  private request(method: string, path: string, body: string | undefined, signal: AbortSignal): Promise<Answer> {
    const url = this.api(path);
    const send = url.protocol === 'https:' ? https.request : http.request;
    return new Promise((resolve, reject) => {
      const req = send(url, { method, headers: this.headers, signal }, resolve);
      req.on('error', reject);
      req.end(body);
    });
  }

  /**
   * Reads records until the stream ends; output goes out as it comes. Frames (our server's
   * answer to our Accept) pass output bytes straight on; NDJSON (a server that does not speak
   * frames) is read line by line: lines are found in the bytes, and only a whole line is decoded.
   */
  private read(response: Answer): Promise<void> {
    if (String(response.headers['content-type']).startsWith(FRAMES_TYPE)) return this.consume(response, this.frameReader());
    // The unfinished line, as text: a record usually spans two reads. Decoding each part as it
    // comes (the decoder keeps a character cut in two) instead of joining Buffers saved the
    // client a copy per record and the external-memory garbage collections it triggered.
    const decoder = new StringDecoder('utf8');
    let pending = '';
    return this.consume(response, (chunk) => {
      let start = 0;
      let newline: number;
      while ((newline = chunk.indexOf(10, start)) >= 0) {
        const line = pending + decoder.write(chunk.subarray(start, newline));
        pending = '';
        start = newline + 1;
        // Blank lines are the server's heartbeats.
        if (line.trim()) this.show(JSON.parse(line) as BuildRecord);
      }
      if (start < chunk.length) pending += decoder.write(start ? chunk.subarray(start) : chunk);
      if (pending.length > MAX_RECORD_CHARS) throw new Error('a record longer than any the server sends');
    });
  }

  /** How much of the output frame being read was written out: a stream resumed inside a frame gets it again whole. */
  private partial = { seq: 0, written: 0 };

  private frameReader(): (chunk: Buffer) => void {
    const frames = new FrameReader({
      output: (stream, seq, piece, offset) => {
        if (seq <= this.lastSeq) return;
        const skip = seq === this.partial.seq ? this.partial.written - offset : 0;
        if (skip >= piece.length) return;
        this.out(stream, skip > 0 ? piece.subarray(skip) : piece);
        this.partial = { seq, written: offset + piece.length };
      },
      outputEnd: (seq) => {
        if (seq > this.lastSeq) this.lastSeq = seq;
      },
      record: (record) => this.show(record),
    });
    return (chunk) => frames.write(chunk);
  }

  /**
   * Feeds the answer's bytes to `take` until the stream ends. What `take` throws on is not our
   * records: like a dropped connection, the stream ends and run() resumes after the last record.
   */
  private consume(response: Answer, take: (chunk: Buffer) => void): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        response.off('data', onData);
        resolve();
      };
      const onData = (chunk: Buffer) => {
        try {
          take(chunk);
        } catch {
          response.destroy();
          return done();
        }
        this.holdWhileFull(response);
      };
      response.on('data', onData);
      response.once('end', done);
      response.once('close', done);
      response.once('error', done);
    });
  }

  /** A terminal or pipe that does not keep up holds the stream (and so the server's build). */
  private holdWhileFull(response: Answer): void {
    const full = (['stdout', 'stderr'] as const).filter((name) => this.full[name]);
    if (!full.length) return;
    response.pause();
    for (const name of full) {
      process[name].once('drain', () => {
        this.full[name] = false;
        if (!this.full.stdout && !this.full.stderr) response.resume();
      });
    }
  }

  private readonly full = { stdout: false, stderr: false };

  private out(stream: 'stdout' | 'stderr', text: string | Buffer): void {
    if (!process[stream].write(text)) this.full[stream] = true;
  }

  private show(record: BuildRecord): void {
    if (record.seq <= this.lastSeq) return;
    this.lastSeq = record.seq;
    if (record.type === 'output') this.out(record.stream === 'stderr' ? 'stderr' : 'stdout', record.data);
    else if (record.type === 'queued') {
      this.out('stdout', record.waiting_for === 'service' ? 'another build of this service is running; waiting for it to finish\n' : `queued: ${record.place} in line\n`);
    }
    else if (record.type === 'cut') this.out('stderr', `[buildbot: ${record.bytes} bytes of output were left out here]\n`);
    else if (record.type === 'exit') {
      if (typeof record.code === 'number') this.exitCode = record.code;
      else this.abandoned = true;
    }
  }

  /** A refusal before the build started: the server's error, in command-line terms. */
  private async refused(response: Answer): Promise<number> {
    let error: { code?: string; message?: string; field?: string | null } = {};
    try {
      error = (JSON.parse(await readCapped(response, 64 * 1024)) as { error?: typeof error }).error ?? {};
    } catch {
      // not our API's error body
    }
    const field = error.field ?? undefined;
    let message = error.message ?? `the server answered ${response.statusCode} ${response.statusMessage ?? ''}`.trimEnd();
    if (field) message = message.split(`"${field}"`).join(`--${field === 'tags' ? 'tag' : field}`);
    if (response.statusCode === 401) message += '; set BUILDBOT_TOKEN to a token of that server';
    process.stderr.write(`error: ${message}\n`);
    return response.statusCode === 400 ? EXIT_USAGE : EXIT_UNREACHABLE;
  }
}

/** The body of a short answer, up to `cap` bytes (the rest is not read). */
function readCapped(response: Answer, cap: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const pieces: Buffer[] = [];
    let size = 0;
    response.on('data', (chunk: Buffer) => {
      pieces.push(chunk);
      size += chunk.length;
      if (size > cap) response.destroy();
    });
    response.once('end', () => resolve(Buffer.concat(pieces).toString('utf8')));
    response.once('error', reject);
    response.once('close', () => resolve(Buffer.concat(pieces).toString('utf8')));
  });
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
  const { code, message } = err as { code?: string; message?: string };
  return code && code !== 'ABORT_ERR' ? code : message ?? String(err);
}

