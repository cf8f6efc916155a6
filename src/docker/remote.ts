import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { errors } from '../model/errors.js';

/**
 * Where the Docker engine is, read from DOCKER_HOST, DOCKER_TLS_VERIFY, DOCKER_TLS and
 * DOCKER_CERT_PATH the way the docker CLI reads them, plus the host key pin of an ssh:// engine.
 */
export type EngineTarget =
  | { kind: 'unix'; socketPath: string }
  | { kind: 'tcp'; host: string; port: number; tls?: EngineTls }
  | { kind: 'ssh'; host: string; port?: number; user?: string; knownHosts: string; identity?: string; agentSocket?: string };

export interface EngineTls {
  /** Whether the engine's certificate is checked against ca.pem (DOCKER_TLS_VERIFY). */
  verify: boolean;
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

type Env = Readonly<Record<string, string | undefined>>;

const DEFAULT_SOCKET = '/var/run/docker.sock';
const USE = 'use unix:///path/to/docker.sock, tcp://host[:port] (with DOCKER_TLS_VERIFY=1 and DOCKER_CERT_PATH for TLS) or ssh://[user@]host[:port]';
// A DNS name, an IPv4 address or a bracketed IPv6 address; the value is capped first.
const HOST = /^(?:[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)*|\[[0-9A-Fa-f:.]+\])$/;

export function parseEngineTarget(env: Env): { target: EngineTarget; label: string } {
  const raw = env.DOCKER_HOST || `unix://${DEFAULT_SOCKET}`;
  if (raw.length > 1024) throw errors.usage(`DOCKER_HOST is longer than 1024 characters; ${USE}`);
  if (raw.startsWith('unix://')) {
    const socketPath = raw.slice('unix://'.length) || DEFAULT_SOCKET;
    return { target: { kind: 'unix', socketPath }, label: socketPath };
  }
  // As the docker CLI does, a value without a scheme is a TCP address.
  const withScheme = raw.includes('://') ? raw : `tcp://${raw}`;
  let url: URL;
  try {
    url = new URL(withScheme);
  } catch {
    throw errors.usage(`DOCKER_HOST "${raw}" is not understood; ${USE}`);
  }
  const scheme = url.protocol.slice(0, -1);
  if (url.password) throw errors.usage(`DOCKER_HOST: a password in the URL is not supported; use an SSH key (${USE})`);
  if (url.pathname && url.pathname !== '/') throw errors.usage(`DOCKER_HOST "${raw}" has a path; ${USE}`);
  if (url.search || url.hash) throw errors.usage(`DOCKER_HOST "${raw}" has a query or fragment; ${USE}`);
  const host = url.hostname || 'localhost';
  if (!HOST.test(host)) throw errors.usage(`DOCKER_HOST "${raw}" does not name a host docker accepts (an IPv6 address goes in brackets: tcp://[::1]:2376); ${USE}`);
  const port = url.port ? Number(url.port) : undefined;
  const bare = host.replace(/^\[(.*)\]$/, '$1');

  if (scheme === 'ssh') {
    const home = env.HOME || '/root';
    const knownHosts = env.BUILDBOT_ENGINE_KNOWN_HOSTS || path.join(home, '.ssh', 'known_hosts');
    if (!existsSync(knownHosts)) {
      throw errors.usage(
        `DOCKER_HOST ${raw}: the engine's SSH host key must be pinned, and ${knownHosts} does not exist; ` +
          `run ssh-keyscan${port ? ` -p ${port}` : ''} ${bare} > ${knownHosts}, check the fingerprint (ssh-keygen -lf ${knownHosts}), or point BUILDBOT_ENGINE_KNOWN_HOSTS at a file holding it`,
      );
    }
    const identity = env.BUILDBOT_ENGINE_SSH_KEY || undefined;
    if (identity && !existsSync(identity)) throw errors.usage(`BUILDBOT_ENGINE_SSH_KEY ${identity} does not exist`);
    const user = url.username ? decodeURIComponent(url.username) : undefined;
    if (user !== undefined && !/^[A-Za-z0-9._][A-Za-z0-9._-]*$/.test(user)) throw errors.usage(`DOCKER_HOST: the SSH user is not a valid user name`);
    return { target: { kind: 'ssh', host: bare, port, user, knownHosts, identity, agentSocket: env.SSH_AUTH_SOCK || undefined }, label: `${raw} (ssh, host key pinned in ${knownHosts})` };
  }
  if (scheme !== 'tcp' && scheme !== 'http' && scheme !== 'https') throw errors.usage(`DOCKER_HOST "${raw}": the scheme ${scheme}:// is not supported; ${USE}`);

  // The docker CLI: DOCKER_TLS_VERIFY set to anything turns TLS and verification on, DOCKER_TLS turns TLS on.
  const verify = Boolean(env.DOCKER_TLS_VERIFY);
  const useTls = verify || Boolean(env.DOCKER_TLS) || scheme === 'https';
  const target: EngineTarget = { kind: 'tcp', host: bare, port: port ?? (useTls ? 2376 : 2375) };
  if (useTls) target.tls = readTls(env, verify);
  const shown = `tcp://${host}:${target.port}`;
  return { target, label: useTls ? `${shown} (TLS${verify ? ', certificate verified' : ', certificate NOT verified'})` : shown };
}

function readTls(env: Env, verify: boolean): EngineTls {
  const dir = env.DOCKER_CERT_PATH || path.join(env.HOME || '/root', '.docker');
  const read = (name: string, required: boolean): Buffer | undefined => {
    const file = path.join(dir, name);
    try {
      return readFileSync(file);
    } catch (err) {
      if (!required && (err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw errors.usage(`DOCKER_CERT_PATH: cannot read ${file} (${(err as NodeJS.ErrnoException).code}); it must hold ca.pem${verify ? '' : ' (optional without DOCKER_TLS_VERIFY)'}, cert.pem and key.pem, as the docker CLI expects`);
    }
  };
  const tls: EngineTls = { verify, ca: verify ? read('ca.pem', true) : undefined, cert: read('cert.pem', false), key: read('key.pem', false) };
  if (Boolean(tls.cert) !== Boolean(tls.key)) throw errors.usage(`DOCKER_CERT_PATH ${dir} holds only one of cert.pem and key.pem; the client certificate needs both`);
  return tls;
}

/**
 * Options for dockerode that say everything: docker-modem fills in whatever is left out from
 * its own reading of the environment (with DOCKER_TLS_VERIFY and DOCKER_CERT_PATH set, an
 * http connection with certificates loaded), so every key it reads is given here.
 */
export function dockerodeOptions(target: EngineTarget, toolEnv: Record<string, string>): Record<string, unknown> {
  const none = {
    socketPath: undefined, host: undefined, port: undefined, protocol: 'http', pathPrefix: '/', ca: undefined, cert: undefined, key: undefined,
    username: undefined, password: undefined, timeout: undefined, agent: undefined, checkServerIdentity: undefined, sshOptions: {}, headers: {},
  };
  switch (target.kind) {
    case 'unix':
      return { ...none, socketPath: target.socketPath };
    case 'tcp':
      if (!target.tls) return { ...none, host: target.host, port: target.port };
      // The agent carries every TLS setting: its options win over the request's, and it alone can turn verification off.
      return {
        ...none, host: target.host, port: target.port, protocol: 'https',
        agent: new https.Agent({ ca: target.tls.ca, cert: target.tls.cert, key: target.tls.key, rejectUnauthorized: target.tls.verify }),
      };
    case 'ssh':
      return { ...none, socketPath: sshProxy(target, toolEnv) };
  }
}

const MAX_SSH_STDERR = 4096;
/** How an ssh:// connection that ssh refused reaches the HTTP client: a 502 whose message starts with this. */
export const SSH_REFUSED = 'ssh: ';

/**
 * A private unix socket whose every connection is `ssh … docker system dial-stdio`, as the docker
 * CLI connects to an ssh:// engine. OpenSSH checks the host key against the pinned file and
 * refuses an unknown or changed key (docker-modem's own ssh support checks none). dockerode
 * talks to the socket as to a local engine, so attach and BuildKit's HTTP/2 session get a real
 * socket. When ssh fails before the engine said anything, the client gets an HTTP 502 carrying
 * ssh's reason instead of a bare hang-up.
 */
function sshProxy(target: Extract<EngineTarget, { kind: 'ssh' }>, toolEnv: Record<string, string>): () => Promise<string> {
  const args = [
    '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=yes', '-o', `UserKnownHostsFile=${target.knownHosts}`,
    '-o', 'GlobalKnownHostsFile=/dev/null', '-o', 'ConnectTimeout=20', '-o', 'ServerAliveInterval=15', '-o', 'LogLevel=ERROR',
    ...(target.identity ? ['-i', target.identity, '-o', 'IdentitiesOnly=yes'] : []),
    ...(target.port ? ['-p', String(target.port)] : []),
    ...(target.user ? ['-l', target.user] : []),
    '--', target.host, 'docker', 'system', 'dial-stdio',
  ];
  const env = target.agentSocket ? { ...toolEnv, SSH_AUTH_SOCK: target.agentSocket } : toolEnv;
  let listening: Promise<string> | undefined;
  return () => {
    listening ??= new Promise((resolve, reject) => {
      const dir = mkdtempSync(path.join(os.tmpdir(), 'buildbot-engine-'));
      const socketPath = path.join(dir, 'ssh.sock');
      const server = net.createServer((client) => relay(client, args, env));
      server.on('error', reject);
      server.listen(socketPath, () => {
        server.unref();
        resolve(socketPath);
      });
      process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
    });
    return listening;
  };
}

function relay(client: net.Socket, args: string[], env: Record<string, string>): void {
  const child = spawn('ssh', args, { stdio: ['pipe', 'pipe', 'pipe'], env });
  // The HTTP client keeps idle connections open for reuse and lets the process exit meanwhile;
  // this side of them (the socket, ssh and its pipes) must not hold the process either. While a
  // request is under way, the client's own socket keeps the process alive.
  for (const handle of [client, child, child.stdin, child.stdout, child.stderr]) (handle as { unref?: () => void }).unref?.();
  let stderr = '';
  let answered = false;
  child.stderr.on('data', (chunk: Buffer) => {
    if (stderr.length < MAX_SSH_STDERR) stderr += chunk.toString('utf8').slice(0, MAX_SSH_STDERR - stderr.length);
  });
  child.stdout.once('data', () => (answered = true));
  client.pipe(child.stdin);
  child.stdout.pipe(client, { end: false });
  child.stdin.on('error', () => client.destroy());
  client.on('error', () => child.kill());
  client.on('close', () => {
    if (child.exitCode === null) child.kill();
  });
  child.on('error', (err) => fail(err.message));
  child.on('close', (code) => {
    if (code === 0 || answered) client.end();
    else fail(stderr.trim().split('\n').filter(Boolean).at(-1) ?? `ssh exited with code ${code}`);
  });
  function fail(reason: string) {
    if (client.destroyed) return;
    const body = JSON.stringify({ message: `${SSH_REFUSED}${reason}` });
    client.end(`HTTP/1.1 502 Bad Gateway\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  }
}
