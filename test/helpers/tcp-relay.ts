import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
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
  const child: ChildProcess = spawn(process.execPath, [fileURLToPath(import.meta.url), targetHost, String(targetPort)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const port = await new Promise<number>((resolve, reject) => {
    let text = '';
    child.stdout!.on('data', (d: Buffer) => {
      text += d.toString();
      const match = /^listening (\d+)\n/.exec(text);
      if (match) resolve(Number(match[1]));
    });
    child.once('exit', (code) => reject(new Error(`the relay exited (${code}) before listening`)));
  });
  return {
    port,
    freeze: () => child.kill('SIGSTOP'),
    thaw: () => child.kill('SIGCONT'),
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL');
        await exited;
      }
    },
  };
}

/** The relay process itself: node tcp-relay.js HOST PORT; prints "listening PORT". */
function serve(host: string, port: number): void {
  const server = net.createServer((client) => {
    const upstream = net.connect(port, host);
    client.pipe(upstream).pipe(client);
    const close = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', close).on('close', close);
    upstream.on('error', close).on('close', close);
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`listening ${(server.address() as net.AddressInfo).port}\n`));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) serve(process.argv[2], Number(process.argv[3]));
