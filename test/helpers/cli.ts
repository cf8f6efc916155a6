import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { engineEnv } from './env.js';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BUILDBOT_SH = path.join(ROOT, 'bin', 'buildbot.sh');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** Text that keeps growing (a process's output), and a way to wait until it matches. */
export class GrowingText {
  text = '';
  private readonly watchers = new Set<() => void>();
  private closed = false;

  append(chunk: Buffer | string): void {
    this.text += chunk.toString();
    this.watchers.forEach((w) => w());
  }

  close(): void {
    this.closed = true;
    this.watchers.forEach((w) => w());
  }

  waitFor(re: RegExp, what: string, timeoutMs = 60_000): Promise<void> {
    return new Promise((resolve, reject) => {
      const check = () => {
        if (re.test(this.text)) finish();
        else if (this.closed) finish(new Error(`${what} ended without matching ${re}:\n${this.text}`));
      };
      const finish = (err?: Error) => {
        this.watchers.delete(check);
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      const timer = setTimeout(() => finish(new Error(`timed out waiting for ${re} in ${what}:\n${this.text}`)), timeoutMs);
      this.watchers.add(check);
      check();
    });
  }
}

export interface Running {
  child: ChildProcess;
  /** Everything printed on stdout so far. */
  stdout(): string;
  done: Promise<RunResult>;
  /** Resolves when stdout has printed text matching re. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}

export function spawnRunning(command: string, args: string[], options: SpawnOptions): Running {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
  const stdout = new GrowingText();
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => stdout.append(d));
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolve) =>
    child.on('close', (code, signal) => {
      stdout.close();
      resolve({ code, signal, stdout: stdout.text, stderr });
    }));
  return { child, stdout: () => stdout.text, done, waitFor: (re, timeoutMs) => stdout.waitFor(re, `stdout of ${path.basename(command)}`, timeoutMs) };
}

export const newWorkDir = () => mkdtempSync(path.join(os.tmpdir(), 'buildbot-work-'));

/** Runs the real bin/buildbot.sh as a user would, with a clean environment plus `env`. */
export const startCli = (args: string[], workDir: string, env: Record<string, string> = {}): Running =>
  spawnRunning(BUILDBOT_SH, args, { env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', BUILDBOT_WORK_DIR: workDir, ...engineEnv(), ...env } });

export const runCli = (args: string[], workDir: string, env: Record<string, string> = {}) => startCli(args, workDir, env).done;
