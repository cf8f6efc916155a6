import { createRequire } from 'node:module';
import net, { type AddressInfo } from 'node:net';
import ssh2 from 'ssh2';
import type { Connection, ServerChannel, Session } from 'ssh2';
import type { ServerLog } from '../../log/server-log.js';
import { errors, EXIT_FAILURE, EXIT_USAGE, isBuildError } from '../../model/errors.js';
import { shellSplit } from '../../request/shell-split.js';
import { Admission, type AdmissionLimits } from './admission.js';
import { fingerprint, isAuthorizedKey, type PublicKey } from './authorized-key.js';
import { channelIO, finishChannel, refuse } from './channel.js';
import { findCommand } from './commands/index.js';
import type { ServerServices } from './commands/types.js';

/** What the SSH front reads of the server's settings (src/app/config.ts's ServerConfig has it). */
export interface SshFrontConfig extends AdmissionLimits {
  listen: { host: string; port: number };
  authorizedKey: PublicKey;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
}

export interface SshFront {
  address: AddressInfo;
  /** Commands running now. */
  readonly running: number;
  /** Closes the listener; commands that arrive on open connections are refused from now on. */
  stopAccepting(): void;
  /** Resolves when every command running now has ended. */
  commandsDone(): Promise<void>;
  /** Aborts every running command (its build is cancelled with it). */
  abortCommands(): void;
  /** Gives clients a moment to leave once their command ended, then ends the rest. */
  endClients(): Promise<void>;
}

interface Job {
  controller: AbortController;
  done: Promise<void>;
}

// OpenSSH clients prefer chacha20-poly1305, which ssh2 runs in JavaScript when its native addon
// is missing (a machine without compilers; see sshCrypto below). AES-GCM runs in OpenSSL with
// the CPU's AES instructions either way: offering only AES took build-output throughput from
// 68 MB/s to the figures in BENCHMARKS.md, and keeps a server without the addon usable.
const CIPHERS: ssh2.CipherAlgorithm[] = ['aes128-gcm@openssh.com', 'aes256-gcm@openssh.com'];

// Elliptic-curve key exchange only: a client choosing 8192-bit Diffie-Hellman group exchange
// made the server's one thread spend about 11 ms per connection before any authentication.
const KEX: ssh2.KexAlgorithm[] = ['curve25519-sha256', 'curve25519-sha256@libssh.org', 'ecdh-sha2-nistp256', 'ecdh-sha2-nistp384', 'ecdh-sha2-nistp521'];

/** Failed authentication attempts a connection gets before it is disconnected (OpenSSH's MaxAuthTries). */
export const MAX_AUTH_TRIES = 6;
/** User names in the log are cut to this length: the client chooses them, up to ~35 KB each. */
const MAX_LOGGED_USER = 64;
const loggedUser = (name: string) => (name.length > MAX_LOGGED_USER ? `${name.slice(0, MAX_LOGGED_USER)}…` : name);

const NOT_A_SHELL = 'this server has no shell; it runs one command: buildbot.sh (try: ssh HOST buildbot.sh --help)';


/**
 * The SSH front: authenticates the one authorized key, refuses shells, terminals and forwarding,
 * and runs one command per exec channel (src/fronts/ssh/commands/), its exit status the command's.
 * Closing the connection aborts the command, and with it the build.
 */
export async function startSshFront(config: SshFrontConfig, hostKey: { privateKey: string }, services: ServerServices, log: ServerLog): Promise<SshFront> {
  const jobs = new Set<Job>();
  const clients = new Set<Connection>();
  /** The TCP socket under each connection, by peer address: ssh2 does not hand it out. */
  const sockets = new Map<string, net.Socket>();
  const admission = new Admission(config, log);
  let stopping = false;

  const server = new ssh2.Server(
    {
      hostKeys: [hostKey.privateKey], ident: 'buildbot', algorithms: { cipher: CIPHERS, kex: KEX },
      keepaliveInterval: config.keepaliveIntervalMs, keepaliveCountMax: config.keepaliveCountMax,
    },
    (client, info) => {
      const addr = `${info.ip}:${info.port}`;
      // An unhandled error from a malformed packet would crash the whole server. After any error
      // (a keepalive timeout above all) the socket is destroyed: ssh2 only tries a polite end, which
      // never completes against a peer that stopped reading, so the channel stayed open and the
      // build ran on (to completion and push) until TCP itself gave up. Destroying it closes the
      // channel at once, and that cancels the build.
      client.on('error', (err) => {
        log('connection-error', { addr, error: err.message });
        sockets.get(addr)?.destroy();
      });
      log('connection', { addr, client: info.header.identRaw });
      clients.add(client);

      let failures = 0;
      let noneSeen = false;
      client.on('authentication', (ctx) => {
        const refuse = (fields: Record<string, unknown>) => {
          // OpenSSH clients open with a "none" attempt to learn the methods: that one is free.
          const free = ctx.method === 'none' && !noneSeen;
          if (ctx.method === 'none') noneSeen = true;
          if (fields.reason !== undefined || ctx.method !== 'none') log('auth-refused', { addr, user: loggedUser(ctx.username), ...fields });
          ctx.reject(['publickey']);
          if (!free && ++failures >= MAX_AUTH_TRIES) {
            log('auth-too-many', { addr, attempts: failures });
            client.end();
          }
        };
        if (ctx.method !== 'publickey') return refuse(ctx.method === 'none' ? {} : { method: ctx.method });
        const offered = fingerprint(ctx.key.data);
        if (!isAuthorizedKey(config.authorizedKey, ctx.key.algo, ctx.key.data)) return refuse({ key: offered, reason: 'not the authorized key' });
        // Without a signature this is the client asking whether the key would do.
        if (!ctx.signature) return ctx.accept();
        if (config.authorizedKey.verify(ctx.blob!, ctx.signature, ctx.hashAlgo) === true) return ctx.accept();
        refuse({ key: offered, reason: 'bad signature' });
      });
      client.on('ready', () => {
        admission.authenticated(info.ip, info.port);
        log('authenticated', { addr, key: fingerprint(config.authorizedKey.getPublicSSH()) });
      });
      client.on('close', () => {
        clients.delete(client);
        log('disconnect', { addr });
      });
      client.on('tcpip', (_accept, reject) => {
        log('refused', { addr, what: 'port forwarding' });
        reject();
      });
      client.on('request', (_accept, reject, name) => {
        log('refused', { addr, what: name });
        reject?.();
      });
      client.on('session', (accept) => handleSession(accept(), addr));
    },
  );

  function handleSession(session: Session, addr: string): void {
    let pty = false;
    session.on('pty', (accept) => {
      pty = true;
      accept?.();
    });
    session.on('auth-agent', (_accept, reject) => {
      log('refused', { addr, what: 'agent forwarding' });
      reject?.();
    });
    session.on('x11', (_accept, reject) => reject?.());
    session.on('env', (_accept, reject) => reject?.());
    session.on('shell', (accept) => {
      log('refused', { addr, what: 'shell' });
      void refuse(accept(), NOT_A_SHELL);
    });
    session.on('subsystem', (accept, _reject, info) => {
      log('refused', { addr, what: `subsystem ${info.name}` });
      void refuse(accept(), `the ${info.name} subsystem is not available; ${NOT_A_SHELL}`);
    });
    session.on('exec', (accept, _reject, info) => {
      const channel = accept();
      if (pty) {
        log('refused', { addr, what: 'exec with a terminal' });
        void refuse(channel, 'buildbot.sh does not run on a terminal; run ssh without -t');
        return;
      }
      runJob(channel, info.command, addr);
    });
  }

  function runJob(channel: ServerChannel, commandLine: string, addr: string): void {
    if (stopping) {
      const refusal = errors.shuttingDown();
      void refuse(channel, refusal.message, refusal.exitCode);
      return;
    }
    const controller = new AbortController();
    // stdin is not used, but reading it is what makes an abrupt drop end the channel.
    channel.resume();
    channel.once('close', () => controller.abort());
    const job: Job = {
      controller,
      done: execute(channel, commandLine, controller.signal, addr)
        .catch((err: Error) => log('command-failed', { addr, error: err.message }))
        .finally(() => jobs.delete(job)),
    };
    jobs.add(job);
  }

  async function execute(channel: ServerChannel, commandLine: string, signal: AbortSignal, addr: string): Promise<void> {
    const io = channelIO(channel);
    let words: string[];
    try {
      words = shellSplit(commandLine, 'the command', { quoteInput: false });
    } catch (err) {
      if (!isBuildError(err)) throw err;
      return refuse(channel, err.message, EXIT_USAGE);
    }
    const command = findCommand(words[0] ?? '');
    if (!command) {
      log('refused', { addr, what: 'unknown command' });
      return refuse(channel, `no such command${words[0] && /^[\w./-]{1,64}$/.test(words[0]) ? ` "${words[0]}"` : ''}; ${NOT_A_SHELL}`, 127);
    }
    let code: number;
    try {
      code = await command.run(words.slice(1), io, signal, services);
    } catch (err) {
      // Unknown errors: the client learns that it failed, the stack goes only to the server log.
      log('command-failed', { addr, stack: (err as Error).stack ?? String(err) });
      io.stderr.write('error: unexpected failure in the server; its log has the details\n');
      code = EXIT_FAILURE;
    }
    await finishChannel(channel, code);
  }

  const tcp = net.createServer((socket) => {
    if (!admission.admit(socket, stopping)) return;
    const addr = `${socket.remoteAddress}:${socket.remotePort}`;
    sockets.set(addr, socket);
    socket.once('close', () => sockets.delete(addr));
    server.injectSocket(socket);
  });
  await new Promise<void>((resolve, reject) => {
    tcp.once('error', reject);
    tcp.listen(config.listen.port, config.listen.host, () => {
      tcp.off('error', reject);
      resolve();
    });
  }).catch((err: NodeJS.ErrnoException) => {
    // A busy or wrong address is the operator's to fix, as for --http-listen: exit 2, naming the flag.
    throw errors.usage(`--listen ${config.listen.host}:${config.listen.port}: ${err.code === 'EADDRINUSE' ? 'the address is in use' : err.message}; pick another with --listen`);
  });
  const address = tcp.address() as AddressInfo;
  return {
    address,
    get running() {
      return jobs.size;
    },
    stopAccepting() {
      stopping = true;
      tcp.close();
    },
    async commandsDone() {
      await Promise.all([...jobs].map((j) => j.done));
    },
    abortCommands() {
      jobs.forEach((job) => job.controller.abort());
    },
    async endClients() {
      for (let waited = 0; clients.size && waited < 2000; waited += 50) await new Promise((r) => setTimeout(r, 50));
      for (const client of clients) client.end();
    },
  };
}

/**
 * Whether ssh2 encrypts with its native addon, built when the package is installed, or falls
 * back to a node:crypto cipher per packet: the fallback works but costs the server about half
 * again as much CPU while output streams, so the operator should see which one runs.
 */
export function sshCrypto(): 'native' | 'javascript' | 'unknown' {
  try {
    const internals = createRequire(import.meta.url)('ssh2/lib/protocol/crypto.js') as { bindingAvailable?: unknown };
    return internals.bindingAvailable === true ? 'native' : 'javascript';
  } catch {
    return 'unknown';
  }
}
