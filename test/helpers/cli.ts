import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const BUILDBOT_SH = path.join(ROOT, 'bin', 'buildbot.sh');

export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

export interface Running {
  child: ChildProcess;
  /** Everything printed so far. */
  stdout(): string;
  done: Promise<RunResult>;
  /** Resolves when stdout has printed text matching re. */
  waitFor(re: RegExp, timeoutMs?: number): Promise<void>;
}

export const newWorkDir = () => mkdtempSync(path.join(os.tmpdir(), 'buildbot-work-'));

/** Runs the real bin/buildbot.sh as a user would, with a clean environment plus `env`. */
export function startCli(args: string[], workDir: string, env: Record<string, string> = {}): Running {
  const child = spawn(BUILDBOT_SH, args, {
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', BUILDBOT_WORK_DIR: workDir, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    for (const w of watchers) w();
  });
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<RunResult>((resolve) => child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr })));
  return {
    child,
    stdout: () => stdout,
    done,
    waitFor: (re, timeoutMs = 60_000) =>
      new Promise((resolve, reject) => {
        const check = () => {
          if (re.test(stdout)) {
            watchers.delete(check);
            clearTimeout(timer);
            resolve();
          }
        };
        const timer = setTimeout(() => {
          watchers.delete(check);
          reject(new Error(`timed out waiting for ${re} in stdout:\n${stdout}`));
        }, timeoutMs);
        watchers.add(check);
        done.then(() => {
          check();
          if (watchers.has(check)) {
            watchers.delete(check);
            clearTimeout(timer);
            reject(new Error(`exited before printing ${re}; stdout:\n${stdout}`));
          }
        });
        check();
      }),
  };
}

export const runCli = (args: string[], workDir: string, env: Record<string, string> = {}) => startCli(args, workDir, env).done;
