import { randomUUID } from 'node:crypto';
import type { Duplex } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type Docker from 'dockerode';
import protobuf from 'protobufjs';
import { registryOfHost } from '../request/registry.js';

/** The build stream's event id for BuildKit progress; its `aux` is a base64 StatusResponse. */
export const BUILDKIT_TRACE = 'moby.buildkit.trace';

// Unpacking the context tar we uploaded: BuildKit's step, not one of the Dockerfile.
const CONTEXT_UNPACK = 'copy /context /';

const MAX_PARTIAL_LINE = 64 * 1024;
// BuildKit's step that reads a --cache_from image's cache metadata.
const CACHE_IMPORT = 'importing cache manifest from ';

// The part of moby/buildkit's control.proto StatusResponse that the progress display uses;
// protobufjs skips the fields left out (per-transfer byte counts, progress groups).
const StatusResponse = protobuf
  .parse(`syntax = "proto3";
    message StatusResponse { repeated Vertex vertexes = 1; repeated VertexLog logs = 3; repeated VertexWarning warnings = 4; }
    message Vertex { string digest = 1; string name = 3; bool cached = 4; Timestamp started = 5; Timestamp completed = 6; string error = 7; }
    message VertexLog { string vertex = 1; int64 stream = 3; bytes msg = 4; }
    message VertexWarning { bytes short = 3; }
    message Timestamp { int64 seconds = 1; int32 nanos = 2; }`)
  .root.lookupType('StatusResponse');

interface Status {
  vertexes: Array<{ digest: string; name: string; cached: boolean; started?: object; completed?: object; error?: string }>;
  logs: Array<{ vertex: string; stream: number; msg: Uint8Array }>;
  warnings: Array<{ short: Uint8Array }>;
}

/** Encodes a status message as the engine sends it (for tests of the display). */
export function encodeStatus(status: object): string {
  return Buffer.from(StatusResponse.encode(StatusResponse.fromObject(status)).finish()).toString('base64');
}

export function decodeStatus(base64: string): Status {
  return StatusResponse.toObject(StatusResponse.decode(Buffer.from(base64, 'base64')), { arrays: true, longs: Number }) as Status;
}

/**
 * Turns a build's progress into lines. From BuildKit: each Dockerfile step once as it starts
 * (or as cached), then its output line by line; BuildKit's own bookkeeping ("[internal] load
 * build definition", unpacking the uploaded context, transfer counters) is left out. From the
 * classic builder: its text, line by line.
 */
export class BuildProgress {
  private readonly announced = new Set<string>();
  private readonly partial = new Map<string, Buffer>();

  constructor(private readonly print: (line: string) => void) {}

  update(status: Status): void {
    for (const vertex of status.vertexes) {
      if (!this.announced.has(vertex.digest) && (vertex.started || vertex.cached) && !isBookkeeping(vertex.name)) {
        this.announced.add(vertex.digest);
        this.print(vertex.cached ? `${vertex.name} (cached)` : vertex.name);
      }
    }
    // A cache source that cannot be read does not fail the build: say why its layers were not reused.
    for (const vertex of status.vertexes) {
      if (vertex.error && vertex.name.startsWith(CACHE_IMPORT) && !this.announced.has(`${vertex.digest} error`)) {
        this.announced.add(`${vertex.digest} error`);
        this.print(`warning: ${vertex.name} failed: ${vertex.error}`);
      }
    }
    // A step's stdout and stderr each have their own unfinished line.
    for (const log of status.logs) this.text(`${log.vertex} ${log.stream}`, log.msg);
    for (const vertex of status.vertexes) if (vertex.completed) this.flush(vertex.digest);
    for (const warning of status.warnings) this.print(`warning: ${Buffer.from(warning.short).toString('utf8')}`);
  }

  /** Prints the complete lines of a stream of text (`key` names it), holding back its unfinished last line. */
  text(key: string, chunk: Uint8Array): void {
    let text = Buffer.concat([this.partial.get(key) ?? Buffer.alloc(0), chunk]);
    let nl: number;
    while ((nl = text.indexOf(10)) >= 0) {
      this.print(text.subarray(0, nl).toString('utf8'));
      text = text.subarray(nl + 1);
    }
    // Output without newlines (a progress bar) is shown in pieces rather than held without bound.
    if (text.length > MAX_PARTIAL_LINE) {
      this.print(text.toString('utf8'));
      text = Buffer.alloc(0);
    }
    this.partial.set(key, text);
  }

  /** Prints what is left of a step's last lines (all steps' when no digest is given). */
  flush(digest?: string): void {
    for (const key of [...this.partial.keys()].filter((k) => digest === undefined || k.startsWith(`${digest} `))) {
      const rest = this.partial.get(key);
      if (rest?.length) this.print(rest.toString('utf8'));
      this.partial.delete(key);
    }
  }
}

function isBookkeeping(name: string): boolean {
  return name.startsWith('[internal]') || name === CONTEXT_UNPACK;
}

/*
 * The BuildKit session: the channel over which the engine asks the client for registry
 * credentials and build secrets while a build runs. dockerode opens one that answers every
 * credential request with nothing (or, given authconfig, with the push credentials for every
 * host a FROM line names), and has no secrets. This one answers credential requests only for
 * the push registry, and serves the request's build secrets.
 */

const SessionMessages = protobuf
  .parse(`syntax = "proto3";
    message CredentialsRequest { string Host = 1; }
    message CredentialsResponse { string Username = 1; string Secret = 2; }
    message GetSecretRequest { string ID = 1; map<string, string> annotations = 2; }
    message GetSecretResponse { bytes data = 1; }
    message HealthCheckRequest { string service = 1; }
    message HealthCheckResponse { int32 status = 1; }`)
  .root;

function unary(path: string, request: string, response: string): grpc.MethodDefinition<object, object> {
  const req = SessionMessages.lookupType(request);
  const res = SessionMessages.lookupType(response);
  return {
    path,
    requestStream: false,
    responseStream: false,
    requestSerialize: (value: object) => Buffer.from(req.encode(req.fromObject(value)).finish()),
    requestDeserialize: (bytes: Buffer) => req.toObject(req.decode(bytes), { defaults: true }),
    responseSerialize: (value: object) => Buffer.from(res.encode(res.fromObject(value)).finish()),
    responseDeserialize: (bytes: Buffer) => res.toObject(res.decode(bytes), { defaults: true }),
  };
}

const AUTH = { Credentials: unary('/moby.filesync.v1.Auth/Credentials', 'CredentialsRequest', 'CredentialsResponse') };
const SECRETS = { GetSecret: unary('/moby.buildkit.secrets.v1.Secrets/GetSecret', 'GetSecretRequest', 'GetSecretResponse') };
// BuildKit checks the session's health every second and drops a session that does not answer.
const HEALTH = { Check: unary('/grpc.health.v1.Health/Check', 'HealthCheckRequest', 'HealthCheckResponse') };
const SERVING = 1;

export interface SessionAnswers {
  /** The registry that gets the login (host[:port] or docker.io, as registry.ts names it). */
  registry: string;
  login?: { username: string; password: string };
  /** Build secrets by id, for RUN --mount=type=secret,id=… */
  secrets: ReadonlyMap<string, Buffer>;
  /** Told which hosts asked and were answered (for the server log; never the credentials). */
  onCredentialRequest?: (host: string, answered: boolean) => void;
}

/** The credentials BuildKit gets for `host`: the login for the push registry's host, nothing for any other. */
export function credentialsFor(host: string, answers: SessionAnswers): { Username?: string; Secret?: string } {
  const asked = registryOfHost(host);
  if (!answers.login || asked === undefined || asked !== answers.registry) return {};
  return { Username: answers.login.username, Secret: answers.login.password };
}

/**
 * Opens a session on the engine (POST /session, upgraded to HTTP/2 with the engine as the
 * gRPC client) and returns its id and a function that closes it.
 */
export function openSession(docker: Docker, answers: SessionAnswers): Promise<{ id: string; close: () => void }> {
  const id = randomUUID();
  const methods = [AUTH.Credentials.path, SECRETS.GetSecret.path, HEALTH.Check.path];
  return new Promise((resolve, reject) => {
    docker.modem.dial({
      method: 'POST',
      path: '/session',
      hijack: true,
      headers: {
        Upgrade: 'h2c',
        'X-Docker-Expose-Session-Uuid': id,
        'X-Docker-Expose-Session-Name': 'buildbot',
        'X-Docker-Expose-Session-Sharedkey': '',
        'X-Docker-Expose-Session-Grpc-Method': methods,
      },
      statusCodes: { 101: true, 200: true, 500: 'server error' },
    } as object as Parameters<typeof docker.modem.dial>[0], (err: unknown, socket: unknown) => {
      if (err) return reject(err);
      const connection = socket as Duplex;
      const server = new grpc.Server();
      server.addService(AUTH, {
        Credentials(call: grpc.ServerUnaryCall<{ Host: string }, object>, callback: grpc.sendUnaryData<object>) {
          const answer = credentialsFor(call.request.Host, answers);
          answers.onCredentialRequest?.(call.request.Host, answer.Username !== undefined);
          callback(null, answer);
        },
      });
      server.addService(SECRETS, {
        GetSecret(call: grpc.ServerUnaryCall<{ ID: string }, object>, callback: grpc.sendUnaryData<object>) {
          const data = answers.secrets.get(call.request.ID);
          if (data === undefined) callback({ code: grpc.status.NOT_FOUND, details: `no build secret "${call.request.ID}" was given (--build_secret ID=VALUE)` });
          else callback(null, { data });
        },
      });
      server.addService(HEALTH, {
        Check(_call: unknown, callback: grpc.sendUnaryData<object>) {
          callback(null, { status: SERVING });
        },
      });
      // Over a TLS connection to the engine, Node's HTTP/2 server would take the socket's ALPN
      // answer (none: the engine's API speaks HTTP/1.1) for a client that cannot speak HTTP/2 and
      // drop the session; after the upgrade it does speak HTTP/2 (h2c, in the clear inside TLS).
      if ((connection as Duplex & { alpnProtocol?: unknown }).alpnProtocol !== undefined) Object.assign(connection, { alpnProtocol: 'h2' });
      server.createConnectionInjector(grpc.ServerCredentials.createInsecure()).injectConnection(connection);
      let closed = false;
      resolve({
        id,
        close() {
          if (closed) return;
          closed = true;
          server.forceShutdown();
          connection.destroy();
        },
      });
    });
  });
}

/**
 * Starts a build on the engine, as dockerode's buildImage does, but with BuildKit's session
 * opened here (see openSession) when `session` is given. The session closes when the build's
 * stream ends, fails or is aborted.
 */
export async function startBuild(
  docker: Docker,
  context: NodeJS.ReadableStream,
  query: Record<string, unknown>,
  options: { signal: AbortSignal; session?: SessionAnswers; registryConfig?: Record<string, object> },
): Promise<NodeJS.ReadableStream> {
  const session = options.session ? await openSession(docker, options.session) : undefined;
  try {
    const stream = await new Promise<NodeJS.ReadableStream>((resolve, reject) => {
      docker.modem.dial({
        path: '/build?',
        method: 'POST',
        file: context,
        options: { ...query, ...(session ? { session: session.id } : {}) },
        ...(options.registryConfig ? { registryconfig: options.registryConfig } : {}),
        abortSignal: options.signal,
        isStream: true,
        statusCodes: { 200: true, 400: 'bad parameter', 500: 'server error' },
      } as object as Parameters<typeof docker.modem.dial>[0], (err: unknown, data: unknown) => (err ? reject(err) : resolve(data as NodeJS.ReadableStream)));
    });
    if (session) {
      for (const event of ['end', 'close', 'error']) stream.once(event, session.close);
      options.signal.addEventListener('abort', session.close, { once: true });
    }
    return stream;
  } catch (err) {
    session?.close();
    throw err;
  }
}
