import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { engineSocket } from './env.js';

interface Rule {
  match: RegExp;
  /** Holds a matching request back this long before it goes on to the engine. */
  delayMs?: number;
  /** Forwards this many bytes of the matching request's answer, then nothing more either way. */
  freezeAfterBytes?: number;
  onHit?: () => void;
}

/**
 * A unix socket in front of the engine's socket that forwards bytes both ways, and can hold
 * back requests (latency on one connection) or stop forwarding in the middle of an answer (an
 * engine, or the network to it, that froze). Product processes are pointed at it with DOCKER_HOST.
 * Requests are recognised by their request line at the start of a chunk, which is where the
 * engine's clients (one request at a time per connection) put it.
 */
export class EngineRelay {
  readonly socketPath: string;
  private readonly dir: string;
  private readonly server: net.Server;
  private readonly rules: Rule[] = [];
  private readonly sockets = new Set<net.Socket>();
  /** Request lines seen, in order, e.g. "GET /v1.41/containers/…/archive?path=%2Fproject". */
  readonly requests: string[] = [];

  private constructor() {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'engine-relay-'));
    this.socketPath = path.join(this.dir, 'docker.sock');
    this.server = net.createServer((client) => this.relay(client));
  }

  static async start(target = engineSocket()): Promise<EngineRelay> {
    const relay = new EngineRelay();
    relay.target = target;
    await new Promise<void>((resolve, reject) => {
      relay.server.once('error', reject);
      relay.server.listen(relay.socketPath, resolve);
    });
    return relay;
  }

  private target = '';

  /** DOCKER_HOST for a product process that should talk to the engine through this relay. */
  get dockerHost(): string {
    return `unix://${this.socketPath}`;
  }

  delay(match: RegExp, delayMs: number): void {
    this.rules.push({ match, delayMs });
  }

  /** Resolves when a matching request's answer has been frozen. */
  freeze(match: RegExp, afterBytes: number): Promise<void> {
    return new Promise((resolve) => this.rules.push({ match, freezeAfterBytes: afterBytes, onHit: resolve }));
  }

  clearRules(): void {
    this.rules.length = 0;
  }

  private relay(client: net.Socket): void {
    const upstream = net.connect(this.target);
    this.sockets.add(client).add(upstream);
    let frozen = false;
    let freezeLeft: number | undefined;
    let freezeRule: Rule | undefined;
    // Client to engine, in order, each chunk possibly held back.
    let queue = Promise.resolve();
    client.on('data', (chunk: Buffer) => {
      const line = /^(GET|POST|PUT|DELETE|HEAD) (\S+) HTTP\/1\.[01]\r\n/.exec(chunk.subarray(0, 2048).toString('latin1'));
      let delayMs = 0;
      if (line) {
        this.requests.push(`${line[1]} ${line[2]}`);
        for (const rule of this.rules) {
          if (!rule.match.test(`${line[1]} ${line[2]}`)) continue;
          if (rule.delayMs) delayMs = rule.delayMs;
          if (rule.freezeAfterBytes !== undefined && freezeLeft === undefined) {
            freezeLeft = rule.freezeAfterBytes;
            freezeRule = rule;
            // Each freeze rule catches one request.
            this.rules.splice(this.rules.indexOf(rule), 1);
          }
        }
      }
      queue = queue.then(async () => {
        if (delayMs) await new Promise((r) => setTimeout(r, delayMs));
        if (frozen || upstream.destroyed) return;
        // With backpressure, as a socket pair would: a reader that stops reading stops the writer.
        if (!upstream.write(chunk)) {
          client.pause();
          upstream.once('drain', () => client.resume());
        }
      });
    });
    upstream.on('data', (chunk: Buffer) => {
      if (frozen) return;
      if (freezeLeft !== undefined) {
        const pass = chunk.subarray(0, freezeLeft);
        freezeLeft -= pass.length;
        if (pass.length) client.write(pass);
        if (freezeLeft === 0) {
          // From here on nothing passes, and nothing is closed: a peer that went silent.
          frozen = true;
          upstream.pause();
          freezeRule?.onHit?.();
        }
        return;
      }
      if (!client.write(chunk)) {
        upstream.pause();
        client.once('drain', () => !frozen && upstream.resume());
      }
    });
    // Closes pass on, except on a frozen connection (a silent peer sends no FIN either).
    upstream.on('end', () => !frozen && client.end());
    client.on('end', () => !frozen && upstream.end());
    const drop = () => {
      if (frozen) return;
      client.destroy();
      upstream.destroy();
    };
    upstream.on('error', drop);
    client.on('error', drop);
    upstream.on('close', drop);
    client.on('close', drop);
    client.on('close', () => this.sockets.delete(client));
    upstream.on('close', () => this.sockets.delete(upstream));
  }

  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
    rmSync(this.dir, { recursive: true, force: true });
  }
}
