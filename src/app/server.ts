import type { AddressInfo } from 'node:net';
import { errors } from '../model/errors.js';
import type { ServerLog } from '../log/server-log.js';
import type { ServerServices } from '../fronts/ssh/commands/types.js';
import type { ServerConfig } from './config.js';
import { loadOrCreateHostKey } from '../fronts/ssh/host-key.js';
import { sshCrypto, startSshFront } from '../fronts/ssh/server.js';
import { EnginePool } from '../engines/pool.js';
import { removeOrphanKeys } from '../vcs/orphan-keys.js';
import { migrateCloneCaches } from '../pipeline/clone-cache.js';
import { closeSshMasters } from '../vcs/ssh-master.js';
import { dropSpares } from '../pipeline/spare-networks.js';
import { settleAllBackground } from '../docker/background.js';
import { BuildService } from '../service/service.js';
import { History } from '../store/files/history.js';
import { createMetrics } from '../service/metrics.js';
import { Tokens } from '../fronts/http/auth.js';
import { StreamGate } from '../fronts/http/limits.js';
import { startHttpServer, type RunningHttp } from '../fronts/http/server.js';
import { ProjectBuilds } from '../projects/builds.js';

export interface RunningServer {
  address(): AddressInfo;
  /** The HTTP API's address; undefined with --http-listen none. */
  httpAddress(): AddressInfo | undefined;
  hostKeyFingerprint: string;
  /** Stops accepting, lets running commands finish within the grace period, then aborts them. */
  shutdown(): Promise<void>;
  /** Aborts everything now (a second SIGTERM). */
  abortAll(): void;
  /** SIGHUP: reads the projects file again (a bad one keeps the old projects). */
  reloadProjects(): Promise<boolean>;
}

/** How long a shutdown waits for builds it aborted to end, past the grace period. */
const ABORTED_BUILDS_WAIT_MS = 20_000;

export async function startServer(config: ServerConfig, log: ServerLog): Promise<RunningServer> {
  const hostKey = loadOrCreateHostKey(config.hostKeyFile);
  log('host-key', { file: config.hostKeyFile, fingerprint: hostKey.fingerprint, created: hostKey.created });
  const running = new Set<string>();
  const engines = new EnginePool(config.engines, config, { maxBuilds: config.maxBuilds, affinityWaitMs: config.affinityWaitMs, log, running, named: config.enginesNamed, keepDrains: true });
  const builds = new BuildService({ config, engines, log, maxBuilds: config.maxBuilds, logCapBytes: config.logCapBytes, running });
  const history = new History(config.workDir, builds, config.historyPerService, log);
  const streams = new StreamGate(config.httpLimits);
  const metrics = createMetrics(builds, streams, engines);
  // Read before anything listens: a bad projects file stops the start (exit 2).
  const projects = config.projectsFile ? await ProjectBuilds.open(config.projectsFile, process.env, builds, log, config.publicUrl ?? 'http://localhost', config.workDir) : undefined;
  const services: ServerServices = { config, log, builds, projects };
  await removeOrphanKeys(config.workDir, log);
  await migrateCloneCaches(config.workDir, log);
  // Masters a previous server left (killed before its shutdown closed them) go too.
  await closeSshMasters(config.workDir, config.toolEnv);
  // Each engine's orphans are swept now; its watch, and the expiry of its unused build caches
  // (hourly, in the background: never in a build's way), start with it.
  await engines.start(config.buildCacheDays);
  if (config.enginesNamed) for (const engine of engines.list()) log('engine', { name: engine.name, url: engine.url, slots: engine.slots, draining: engine.draining });

  const ssh = await startSshFront(config, hostKey, services, log);
  const address = ssh.address;
  let stopping = false;
  let httpFront: RunningHttp | undefined;
  if (config.httpListen) {
    const { host, port } = config.httpListen;
    try {
      httpFront = await startHttpServer(config.httpListen, {
        service: builds, history, log, engines, tokens: new Tokens(config.apiTokens, config.apiReadTokens), sshPort: address.port, projects, limits: config.httpLimits, gate: streams,
        metrics: async () => ({ contentType: metrics.contentType, body: await metrics.text() }),
      });
      // Without --public-url, links point at the HTTP address as bound (its port, when 0 was asked).
      const bound = httpFront.address();
      if (projects && !config.publicUrl) projects.publicUrl = `http://${bound.family === 'IPv6' ? `[${bound.address}]` : bound.address}:${bound.port}`;

    } catch (err) {
      ssh.stopAccepting();
      const inUse = (err as NodeJS.ErrnoException).code === 'EADDRINUSE';
      throw errors.usage(`--http-listen ${host}:${port}: ${inUse ? 'the address is in use' : (err as Error).message}; pick another with --http-listen, or turn the HTTP API off with --http-listen none`);
    }
  }
  projects?.reportAbandoned(history.list({ status: 'abandoned', limit: 1000 }));
  log('listening', { addr: `${address.address}:${address.port}`, 'host-key': hostKey.fingerprint, 'max-builds': config.maxBuilds, 'ssh-crypto': sshCrypto() });

  const abortAll = () => {
    ssh.abortCommands();
    builds.abortAll();
  };
  return {
    address: () => address,
    httpAddress: () => httpFront?.address(),
    hostKeyFingerprint: hostKey.fingerprint,
    abortAll,
    reloadProjects: async () => {
      if (!projects) {
        log('projects-reload-skipped', { reason: 'no --projects file was given' });
        return false;
      }
      return projects.reload();
    },
    async shutdown() {
      if (stopping) return;
      stopping = true;
      builds.stop();
      log('shutdown', { running: ssh.running, 'grace-seconds': config.shutdownGraceMs / 1000 });
      ssh.stopAccepting();
      httpFront?.stopAccepting();
      const allDone = () => Promise.all([ssh.commandsDone(), builds.idle()]);
      let timer: NodeJS.Timeout | undefined;
      const graceOver = new Promise<'grace-over'>((resolve) => {
        timer = setTimeout(() => resolve('grace-over'), config.shutdownGraceMs);
      });
      if ((await Promise.race([allDone(), graceOver])) === 'grace-over') {
        log('shutdown-abort', { running: ssh.running });
        abortAll();
        // Bounded too: a build that does not end once aborted (a bug, an engine call that never
        // settles) must not keep the process from exiting; the next start's orphan sweep reaps it.
        const stuck = new Promise<'stuck'>((resolve) => {
          timer = setTimeout(() => resolve('stuck'), ABORTED_BUILDS_WAIT_MS);
        });
        if ((await Promise.race([allDone(), stuck])) === 'stuck') log('shutdown-stuck', { running: ssh.running, 'waited-seconds': ABORTED_BUILDS_WAIT_MS / 1000 });
      }
      clearTimeout(timer);
      log('git-ssh-closed', { connections: await closeSshMasters(config.workDir, config.toolEnv) });
      // Removals the builds left for quieter moments run now (bounded).
      await settleAllBackground(Math.min(config.shutdownGraceMs, 10_000), true);
      await dropSpares(log);
      // The final commit statuses of the last builds: a short wait, then they are given up (and logged).
      if (projects && !(await projects.statuses.settle(Math.min(config.shutdownGraceMs, 10_000)))) log('status-given-up', { reason: 'the server is stopping' });
      // A short wait for removals still being retried; what is left, the next start's sweep removes.
      await engines.settleRemovals(Math.min(config.shutdownGraceMs, 5_000));
      engines.stop('the server is stopping; the orphan sweep of its next start removes it');
      // Clients leave by themselves once their command has finished; give them a moment first.
      await ssh.endClients();
      await httpFront?.close();
      log('stopped');
    },
  };
}

