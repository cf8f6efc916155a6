import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GrowingText, ROOT, spawnRunning, type Running } from './cli.js';
import { engineEnv, keyPath } from './env.js';

export const BUILDBOT_SERVER = path.join(ROOT, 'bin', 'buildbot-server');
/** How long stop() waits for the server's exit before SIGKILL (its shutdown grace is 30 s by default). */
const STOP_TIMEOUT_MS = 60_000;

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  /** The HTTP API's port (0 when it is off). */
  httpPort: number;
  fingerprint: string;
  workDir: string;
  log(): string;
  /** Resolves when the server log has a line matching re. */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<void>;
  exited: Promise<number | null>;
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Starts the real bin/buildbot-server on a free loopback port and waits until it listens. */
export async function startServer(opts: { workDir?: string; args?: string[]; env?: Record<string, string>; cwd?: string } = {}): Promise<ServerProcess> {
  const workDir = opts.workDir ?? mkdtempSync(path.join(os.tmpdir(), 'buildbot-server-'));
  // The HTTP API on a free port too: its default (8080) would collide between servers.
  const http = opts.args?.includes('--http-listen') ? [] : ['--http-listen', '127.0.0.1:0'];
  const child = spawn(BUILDBOT_SERVER, ['--listen', '127.0.0.1:0', '--work-dir', workDir, '--authorized-key', `@${keyPath('client_ed25519.pub')}`, ...http, ...(opts.args ?? [])], {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...engineEnv(), ...opts.env },
    stdio: ['ignore', 'pipe', 'pipe'],
    cwd: opts.cwd,
  });
  const log = new GrowingText();
  child.stderr!.on('data', (d: Buffer) => log.append(d));
  child.stdout!.resume();
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => {
    log.close();
    resolve(code);
  }));
  const waitForLog = (re: RegExp, timeoutMs = 30_000) => log.waitFor(re, 'the server log', timeoutMs);
  await waitForLog(/ listening addr=/);
  const match = / listening addr=[\d.]+:(\d+) host-key=(\S+)/.exec(log.text)!;
  const httpPort = Number(/ http-listening addr=[\d.]+:(\d+)/.exec(log.text)?.[1] ?? 0);
  return {
    child, workDir, port: Number(match[1]), httpPort, fingerprint: match[2], log: () => log.text, waitForLog, exited,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null) child.kill(signal);
      // Bounded: a server that hangs on its way out must fail the test, not eat the CI run's time.
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<'late'>((resolve) => (timer = setTimeout(() => resolve('late'), STOP_TIMEOUT_MS)));
      const code = await Promise.race([exited, late]);
      clearTimeout(timer);
      if (code !== 'late') return code;
      child.kill('SIGKILL');
      await exited;
      throw new Error(`the server did not exit within ${STOP_TIMEOUT_MS / 1000} s of ${signal} and was killed; its log:\n${log.text}`);
    },
  };
}

export interface SshOptions {
  key?: string | null;
  extra?: string[];
}

/** Runs the real OpenSSH client against the server, as a CI script would. */
export function startSsh(server: { port: number }, command: string[], opts: SshOptions = {}): Running {
  const key = opts.key === undefined ? 'client_ed25519' : opts.key;
  return spawnRunning('ssh', [
    '-p', String(server.port), '-o', 'BatchMode=yes', '-o', 'StrictHostKeyChecking=no', '-o', 'UserKnownHostsFile=/dev/null',
    '-o', 'LogLevel=ERROR', '-o', 'IdentitiesOnly=yes', '-o', 'IdentityAgent=none', '-F', '/dev/null',
    ...(key ? ['-i', keyPath(key)] : ['-o', 'IdentityFile=none']),
    ...(opts.extra ?? []), 'root@127.0.0.1', ...command,
  ], {});
}

export const ssh = (server: { port: number }, command: string[], opts: SshOptions = {}) => startSsh(server, command, opts).done;
