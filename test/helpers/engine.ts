import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { testEnv } from './env.js';

/**
 * A second Docker engine for the remote-engine tests: its own data root, exec root and bridge
 * (a short name, a /28 in 10.231.210.0/24, never --bridge none), a unix socket for the test itself and
 * a --tlsverify TCP listener on loopback (IPv4 and, when the machine has it, IPv6) with
 * certificates the test makes with openssl. stop() kills it and removes all it made.
 */
export class SecondEngine {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'bbt-engine-'));
  readonly runDir = `/run/bbt-${process.pid}`;
  readonly dataRoot = `/var/lib/bbt-${process.pid}`;
  readonly bridge = `br-bbt${process.pid % 100000}`;
  readonly socket = `${this.runDir}/docker.sock`;
  /** DOCKER_CERT_PATH for a client: ca.pem, cert.pem, key.pem. */
  readonly clientCerts = path.join(this.dir, 'client');
  /** A client directory whose ca.pem did not sign the engine's certificate. */
  readonly strangerCerts = path.join(this.dir, 'stranger');
  tcpPort = 0;
  tcp6Port?: number;
  private child?: ChildProcess;

  async start(): Promise<void> {
    this.makeCerts();
    mkdirSync(this.runDir, { recursive: true });
    execFileSync('ip', ['link', 'add', this.bridge, 'type', 'bridge']);
    // A /28 of 10.231.210.0/24 chosen by the process id, so that two test runs at once rarely share a subnet.
    execFileSync('ip', ['addr', 'add', `10.231.210.${(process.pid % 16) * 16 + 1}/28`, 'dev', this.bridge]);
    execFileSync('ip', ['link', 'set', this.bridge, 'up']);
    this.tcpPort = await freePort('127.0.0.1');
    if (hasIpv6Loopback()) this.tcp6Port = await freePort('::1');
    await this.spawnDaemon();
    // The base image the test repositories build FROM, without a registry to pull it from.
    execFileSync('bash', ['-c', `set -o pipefail; docker save ${testEnv().busyboxImage} | docker -H unix://${this.socket} load -q`], { stdio: 'ignore' });
  }

  /** Starts dockerd on the engine's data, sockets and ports (again, after halt()) and waits until it answers. */
  private async spawnDaemon(): Promise<void> {
    const hosts = ['--host', `unix://${this.socket}`, '--host', `tcp://127.0.0.1:${this.tcpPort}`];
    if (this.tcp6Port !== undefined) hosts.push('--host', `tcp://[::1]:${this.tcp6Port}`);
    const server = path.join(this.dir, 'server');
    this.child = spawn('dockerd', [
      ...hosts, '--tlsverify', '--tlscacert', path.join(server, 'ca.pem'), '--tlscert', path.join(server, 'cert.pem'), '--tlskey', path.join(server, 'key.pem'),
      '--data-root', this.dataRoot, '--exec-root', path.join(this.runDir, 'exec'), '--pidfile', path.join(this.runDir, 'docker.pid'),
      '--bridge', this.bridge, '--iptables=false', '--ip-masq=false',
    ], { stdio: ['ignore', 'ignore', 'pipe'] });
    let log = '';
    this.child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-8000)));
    const deadline = Date.now() + 60_000;
    while (!this.docker(['info'], true)) {
      if (Date.now() > deadline || this.child.exitCode !== null) throw new Error(`the second dockerd did not come up:\n${log}`);
      await sleep(250);
    }
  }

  /** Stops dockerd as an operator or a host shutdown would (SIGTERM, its containers stopped); the data stays for restart(). */
  async halt(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGKILL');
      await exited;
    }
  }

  /** Starts dockerd again after halt(), on the same data, sockets and ports. */
  async restart(): Promise<void> {
    await this.halt();
    await this.spawnDaemon();
  }

  /** Runs the docker CLI against this engine's unix socket; returns stdout, or undefined on failure when quiet. */
  docker(args: string[], quiet = false): string | undefined {
    try {
      return execFileSync('docker', ['-H', `unix://${this.socket}`, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', quiet ? 'ignore' : 'pipe'] });
    } catch (err) {
      if (quiet) return undefined;
      throw err;
    }
  }

  /** The environment a client uses to reach this engine over TCP with TLS, as the docker CLI reads it. */
  tlsEnv(certs = this.clientCerts, host = `tcp://127.0.0.1:${this.tcpPort}`): Record<string, string> {
    return { DOCKER_HOST: host, DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs };
  }

  async stop(): Promise<void> {
    if (this.child && this.child.exitCode === null) {
      this.child.kill('SIGTERM');
      const exited = new Promise((resolve) => this.child!.once('exit', resolve));
      await Promise.race([exited, sleep(20_000)]);
      if (this.child.exitCode === null) this.child.kill('SIGKILL');
    }
    try {
      execFileSync('ip', ['link', 'del', this.bridge], { stdio: 'ignore' });
    } catch {
      // not made, or gone already
    }
    // Mounts dockerd left (it unmounts them on a clean exit).
    try {
      execFileSync('bash', ['-c', `grep -o " ${this.dataRoot}[^ ]*\\| ${this.runDir}[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l`], { stdio: 'ignore' });
    } catch {
      // nothing mounted
    }
    for (const dir of [this.dir, this.runDir, this.dataRoot]) rmSync(dir, { recursive: true, force: true });
  }

  private makeCerts(): void {
    const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: this.dir, stdio: 'ignore' });
    const ca = (name: string) => {
      ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name}`, '-keyout', `${name}-key.pem`, '-out', `${name}.pem`);
    };
    const leaf = (name: string, signer: string, ext: string) => {
      writeFileSync(path.join(this.dir, `${name}.ext`), ext);
      ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', `/CN=${name}`, '-keyout', `${name}-key.pem`, '-out', `${name}.csr`);
      ssl('x509', '-req', '-in', `${name}.csr`, '-CA', `${signer}.pem`, '-CAkey', `${signer}-key.pem`, '-CAcreateserial', '-days', '2', '-extfile', `${name}.ext`, '-out', `${name}.pem`);
    };
    ca('ca');
    ca('other-ca');
    leaf('server', 'ca', 'subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
    leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
    const put = (dir: string, files: Record<string, string>) => {
      mkdirSync(path.join(this.dir, dir), { recursive: true });
      for (const [to, from] of Object.entries(files)) execFileSync('cp', [path.join(this.dir, from), path.join(this.dir, dir, to)]);
    };
    put('server', { 'ca.pem': 'ca.pem', 'cert.pem': 'server.pem', 'key.pem': 'server-key.pem' });
    put('client', { 'ca.pem': 'ca.pem', 'cert.pem': 'client.pem', 'key.pem': 'client-key.pem' });
    put('stranger', { 'ca.pem': 'other-ca.pem', 'cert.pem': 'client.pem', 'key.pem': 'client-key.pem' });
  }
}

/**
 * An OpenSSH server whose one key may only run `docker system dial-stdio` against `socket`,
 * as an engine host reached by ssh:// would. stop() kills it.
 */
export class EngineSshHost {
  readonly dir = mkdtempSync(path.join(os.tmpdir(), 'bbt-sshd-'));
  readonly key = path.join(this.dir, 'client_ed25519');
  readonly knownHosts = path.join(this.dir, 'known_hosts');
  readonly wrongKnownHosts = path.join(this.dir, 'wrong_known_hosts');
  port = 0;
  private child?: ChildProcess;

  constructor(private readonly socket: string) {}

  async start(): Promise<void> {
    const keygen = (file: string, comment: string) => execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', comment, '-f', file]);
    keygen(path.join(this.dir, 'host_key'), 'engine-host');
    keygen(path.join(this.dir, 'other_host_key'), 'impostor');
    keygen(this.key, 'engine-client');
    const pub = (file: string) => execFileSync('cut', ['-d', ' ', '-f1,2', `${file}.pub`], { encoding: 'utf8' }).trim();
    writeFileSync(path.join(this.dir, 'authorized_keys'),
      `command="env DOCKER_HOST=unix://${this.socket} docker system dial-stdio",no-pty,no-port-forwarding,no-agent-forwarding,no-X11-forwarding ${pub(this.key)}\n`);
    this.port = await freePort('127.0.0.1');
    writeFileSync(this.knownHosts, `[127.0.0.1]:${this.port} ${pub(path.join(this.dir, 'host_key'))}\n`);
    writeFileSync(this.wrongKnownHosts, `[127.0.0.1]:${this.port} ${pub(path.join(this.dir, 'other_host_key'))}\n`);
    writeFileSync(path.join(this.dir, 'sshd_config'), [
      `Port ${this.port}`, 'ListenAddress 127.0.0.1', `HostKey ${this.dir}/host_key`, `PidFile ${this.dir}/sshd.pid`,
      `AuthorizedKeysFile ${this.dir}/authorized_keys`, 'PubkeyAuthentication yes', 'PasswordAuthentication no',
      'KbdInteractiveAuthentication no', 'PermitRootLogin prohibit-password', 'StrictModes no', 'UsePAM no', 'LogLevel ERROR', '',
    ].join('\n'));
    mkdirSync('/run/sshd', { recursive: true });
    const sshd = ['/usr/sbin/sshd', '/usr/bin/sshd'].find((p) => { try { execFileSync('test', ['-x', p]); return true; } catch { return false; } }) ?? 'sshd';
    this.child = spawn(sshd, ['-D', '-f', path.join(this.dir, 'sshd_config'), '-E', path.join(this.dir, 'sshd.log')], { stdio: 'ignore' });
    const deadline = Date.now() + 20_000;
    while (!(await portOpen(this.port))) {
      if (Date.now() > deadline) throw new Error('the engine ssh host did not come up');
      await sleep(100);
    }
  }

  env(knownHosts = this.knownHosts): Record<string, string> {
    return { DOCKER_HOST: `ssh://root@127.0.0.1:${this.port}`, BUILDBOT_ENGINE_KNOWN_HOSTS: knownHosts, BUILDBOT_ENGINE_SSH_KEY: this.key };
  }

  stop(): void {
    this.child?.kill();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

function hasIpv6Loopback(): boolean {
  try {
    return /inet6 ::1\//.test(execFileSync('ip', ['-6', 'addr', 'show', 'lo'], { encoding: 'utf8' }));
  } catch {
    return false;
  }
}

async function freePort(host: string): Promise<number> {
  const net = await import('node:net');
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, host, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

async function portOpen(port: number): Promise<boolean> {
  const net = await import('node:net');
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1', () => {
      socket.destroy();
      resolve(true);
    });
    socket.on('error', () => resolve(false));
  });
}
