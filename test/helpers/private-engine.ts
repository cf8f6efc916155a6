import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import Docker from 'dockerode';
import { docker as testDocker } from './docker.js';

/**
 * A Docker engine of the test's own, to stop and restart without disturbing the engine every
 * other test uses: its own data and exec roots, socket, and bridge (a short-named one made
 * here, in 10.231.230-249.0/24 (test/helpers/engine.ts's second engine uses .210); never --bridge none, which would delete docker0).
 */
export interface PrivateEngine {
  /** DOCKER_HOST for the processes under test. */
  host: string;
  docker: Docker;
  log(): string;
  /** A graceful restart: SIGTERM, wait for the exit, start again on the same data. */
  restart(): Promise<void>;
  /** SIGTERM and wait; the data stays, so start() brings the same containers back. */
  stop(): Promise<void>;
  /** SIGKILL, as a crash: containerd and the containers run on, and start() adopts them again. */
  kill(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good and removes its bridge and directories. */
  dispose(): Promise<void>;
}

export async function startPrivateEngine(): Promise<PrivateEngine> {
  const dir = mkdtempSync('/tmp/bbe-');
  const bridge = createBridge();
  const socket = path.join(dir, 'docker.sock');
  const host = `unix://${socket}`;
  const docker = new Docker({ socketPath: socket });
  const logFile = path.join(dir, 'dockerd.log');
  let child: ChildProcess | undefined;

  const start = async () => {
    const out = openSync(logFile, 'a');
    child = spawn('dockerd', [
      '--host', host, '--data-root', path.join(dir, 'data'), '--exec-root', path.join(dir, 'x'),
      '--pidfile', path.join(dir, 'docker.pid'), '--bridge', bridge.name, '--iptables=false', '--ip-masq=false',
    ], { stdio: ['ignore', out, out] });
    const exited = new Promise<void>((resolve) => child!.once('exit', () => resolve()));
    for (let i = 0; ; i++) {
      if (await docker.ping().then(() => true, () => false)) return;
      if (i > 300 || child.exitCode !== null) throw new Error(`the test's dockerd did not come up:\n${readFileSync(logFile, 'utf8').slice(-3000)}`);
      await Promise.race([sleep(100), exited]);
    }
  };
  const stop = async () => {
    const running = child;
    if (!running || running.exitCode !== null || running.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
    running.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
    if (running.exitCode === null && running.signalCode === null) {
      running.kill('SIGKILL');
      await exited;
    }
  };

  await start();
  return {
    host, docker,
    log: () => readFileSync(logFile, 'utf8'),
    restart: async () => {
      await stop();
      await start();
    },
    stop, start,
    kill: async () => {
      const running = child;
      if (!running || running.exitCode !== null || running.signalCode !== null) return;
      const exited = new Promise<void>((resolve) => running.once('exit', () => resolve()));
      running.kill('SIGKILL');
      await exited;
    },
    dispose: async () => {
      // A killed engine left containerd and its containers running: started again it adopts
      // them, and they are removed through it instead of being left to run unsupervised.
      if (!child || child.exitCode !== null || child.signalCode !== null) await start().catch(() => undefined);
      for (const c of await docker.listContainers({ all: true }).catch(() => [])) await docker.getContainer(c.Id).remove({ force: true }).catch(() => undefined);
      await stop();
      bridge.remove();
      for (const mount of mountsUnder(dir).reverse()) execFileSync('umount', ['-l', mount], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function mountsUnder(dir: string): string[] {
  return readFileSync('/proc/mounts', 'utf8').split('\n').map((line) => line.split(' ')[1]).filter((m) => m?.startsWith(`${dir}/`)).sort();
}

/** Copies images from the suite's engine into another one (no registry here can serve base images). */
export async function copyImages(to: Docker, refs: string[]): Promise<void> {
  for (const ref of refs) {
    const loaded = await to.loadImage((await testDocker.getImage(ref).get()) as NodeJS.ReadableStream);
    await new Promise<void>((resolve, reject) => to.modem.followProgress(loaded, (err) => (err ? reject(err) : resolve())));
  }
}

function createBridge(): { name: string; remove(): void } {
  for (let n = 230 + (process.pid % 20), tries = 0; tries < 20; tries++, n = 230 + ((n - 229) % 20)) {
    const name = `br-bbe${n}`;
    const used = execFileSync('ip', ['-br', 'addr'], { encoding: 'utf8' });
    if (used.includes(`10.231.${n}.`) || used.includes(`${name} `)) continue;
    try {
      execFileSync('ip', ['link', 'add', name, 'type', 'bridge'], { stdio: 'ignore' });
    } catch {
      continue;
    }
    execFileSync('ip', ['addr', 'add', `10.231.${n}.1/24`, 'dev', name]);
    execFileSync('ip', ['link', 'set', name, 'up']);
    return { name, remove: () => execFileSync('ip', ['link', 'del', name], { stdio: 'ignore' }) };
  }
  throw new Error('no free bridge in 10.231.230-249.0/24 for the test engine');
}
