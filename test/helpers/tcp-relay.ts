import { spawn, type ChildProcess } from 'node:child_process';
import { rmSync } from 'node:fs';
import net from 'node:net';
import { Transform } from 'node:stream';
import { fileURLToPath } from 'node:url';

/**
 * A TCP relay in its own process, between a client and a server. Its own process so that a
 * test can freeze it with SIGSTOP: the connection stays open on both sides (no FIN, no RST)
 * and nothing passes, as when a CI VM is frozen or a network path goes dead.
 */
export interface TcpRelay {
  port: number;
  /** SIGSTOP: nothing is forwarded and nothing is closed. */
  freeze(): void;
  thaw(): void;
  stop(): Promise<void>;
}

export async function startTcpRelay(targetPort: number, targetHost = '127.0.0.1'): Promise<TcpRelay> {
  const relay = await spawnRelay('127.0.0.1:0', `${targetHost}:${targetPort}`);
  return { port: Number(relay.listening), freeze: () => relay.child.kill('SIGSTOP'), thaw: () => relay.child.kill('SIGCONT'), stop: relay.stop };
}

/**
 * A relay in front of a unix socket (the engine's): cut() kills it, closing every connection
 * through it at once and refusing new ones, as when the engine dies; restore() brings it back.
 */
export interface SocketRelay {
  path: string;
  /** With opts.hold: resolves once a request holding that text is held back (never forwarded). */
  held: Promise<void>;
  cut(): Promise<void>;
  /** A fresh relay, without a hold. */
  restore(): Promise<void>;
}

/**
 * opts.hold: a request to the engine whose bytes contain this text (e.g. a label in a create's
 * JSON body) is held back, with everything after it on its connection, so that a test can cut
 * the engine while that call is on its way, at a moment it chooses rather than by chance.
 */
export async function startSocketRelay(targetPath: string, listenPath: string, opts: { hold?: string } = {}): Promise<SocketRelay> {
  let relay = await spawnRelay(`unix:${listenPath}`, `unix:${targetPath}`, opts.hold);
  return {
    path: listenPath,
    held: relay.held,
    cut: () => relay.stop(),
    restore: async () => {
      await relay.stop();
      rmSync(listenPath, { force: true });
      relay = await spawnRelay(`unix:${listenPath}`, `unix:${targetPath}`);
    },
  };
}

async function spawnRelay(listen: string, target: string, hold?: string): Promise<{ child: ChildProcess; listening: string; held: Promise<void>; stop(): Promise<void> }> {
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), listen, target, ...(hold === undefined ? [] : [hold])], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  let text = '';
  let onHeld!: () => void;
  const held = new Promise<void>((resolve) => (onHeld = resolve));
  const listening = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const match = /^listening (\S+)\n/.exec(text);
      if (match) resolve(match[1]);
      if (/^held$/m.test(text)) onHeld();
    });
    child.once('exit', (code) => reject(new Error(`the relay exited (${code}) before listening`)));
    setTimeout(() => reject(new Error('the relay did not listen within 20 s')), 20_000).unref();
  });
  return {
    child, listening, held,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

type Address = { path: string } | { host: string; port: number };
const parse = (spec: string): Address => {
  if (spec.startsWith('unix:')) return { path: spec.slice(5) };
  const at = spec.lastIndexOf(':');
  return { host: spec.slice(0, at), port: Number(spec.slice(at + 1)) };
};

/**
 * The relay process itself: node tcp-relay.js LISTEN TARGET [HOLD] (host:port or unix:/path);
 * prints "listening PORT|PATH", and "held" each time it holds a request containing HOLD.
 */
function serve(listen: Address, target: Address, hold?: string): void {
  const server = net.createServer((client) => {
    const upstream = net.connect(target);
    let holding = false;
    const toTarget = hold === undefined ? client : client.pipe(new Transform({
      transform(chunk: Buffer, _encoding, done) {
        if (!holding && chunk.includes(hold)) {
          holding = true;
          process.stdout.write('held\n');
        }
        done(null, holding ? undefined : chunk);
      },
    }));
    toTarget.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  const ready = () => {
    const address = server.address();
    process.stdout.write(`listening ${typeof address === 'string' ? address : address?.port}\n`);
  };
  if ('path' in listen) server.listen(listen.path, ready);
  else server.listen(listen.port, listen.host, ready);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(parse(process.argv[2]), parse(process.argv[3]), process.argv[4]);
