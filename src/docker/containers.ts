/*
 * THE RULE: never two engine calls on one container at once, except attach beside wait.
 *
 * The engine holds a container's lock while an archive (GET or PUT /containers/{id}/archive)
 * streams, until the whole tar has been read. A second call on the same container (another
 * archive, exec, or a removal) waits for that lock; a client that waits for both answers
 * before reading the first hangs for ever once the tar outgrows the socket buffers (~200 KB).
 * That hung the image step for 11 minutes (issue 9): it fetched /project/.dockerignore and
 * /project at once. So: finish reading one archive before the next call on that container
 * (the image step reads .dockerignore whole, then asks for /project), and cancel an archive
 * (abort its request) before removing its container. Once it happened on engine 20.10, the
 * container stayed wedged even for inspect and rm -f until dockerd restarted.
 *
 * Audit (every place with engine calls on one container):
 * - build-script step: create, putArchive (awaited, upload read to its end), then runAttached.
 * - runAttached: attach (hijacked) is opened before start and read while wait() is pending:
 *   the one overlap allowed. Neither takes the lock an archive takes; the docker CLI does the same.
 * - image step: the builder's .dockerignore archive is read whole, then /project is requested;
 *   the /project archive is destroyed when the step ends, however it ends.
 * - test step: removes the builder in the background only now, after the image step is done with
 *   its archives; then create, runAttached, and the test container's removal in the background.
 * - network holders (src/docker/netns.ts): create and start, in the background but under the
 *   build's watchdog like any engine call, then nothing until their removal; the builder and the
 *   test container join their namespace, but those are calls on other containers.
 * - cleanup (BuildContainers.removeAll): after the background work settled and the build's
 *   requests ended; it removes different containers side by side, never one twice.
 * - No exec anywhere.
 * Different containers may be worked on side by side.
 */
import type Docker from 'dockerode';
import type { BatchingSink, Sink } from '../io/output.js';
import { ENGINE_HINT, type Watchdog } from './watchdog.js';
import { engineMessage, followStream, statusOf } from './engine.js';
import { removeContainer, type Removals } from './removals.js';
import { connectionLossDetail, isEngineConnectionLoss, waitForExit } from './wait.js';
import { errors } from '../model/errors.js';

/** Every container a build creates carries these, so leftovers of a dead server can be found. */
export const LABELS = {
  build: 'io.buildbot.build',
  service: 'io.buildbot.service',
  role: 'io.buildbot.role',
  /** Host and process that created the container: a container whose process is gone is an orphan. */
  host: 'io.buildbot.host',
  pid: 'io.buildbot.pid',
} as const;

/** The containers of one build; removeAll() runs on every exit path, success, failure or abort. */
export class BuildContainers {
  private readonly live = new Set<Docker.Container>();
  /** Set by removeAll: the build has ended, and a create answered only now is removed at once. */
  private ended = false;

  constructor(
    private readonly docker: Docker,
    private readonly labels: Record<string, string>,
    /** Retries removals the engine could not do (it was down) after the build has ended. */
    private readonly removals?: Removals,
  ) {}

  async create(role: string, options: Docker.ContainerCreateOptions): Promise<Docker.Container> {
    const container = await this.docker.createContainer({
      ...options,
      Labels: { ...options.Labels, ...this.labels, [LABELS.role]: role },
      // Output reaches the user through attach; the engine's default json-file log would
      // encode every line again, which cost 9x the build's own time for line-heavy output.
      HostConfig: { ...options.HostConfig, LogConfig: { Type: 'none', Config: {} } },
    });
    // Background work (a network holder) may outlive the build's wait for it (an engine that
    // answered late): what it made then goes at once instead of staying behind.
    if (this.ended) {
      await this.removeOne(container);
      throw new Error('the build ended while its container was being created');
    }
    this.live.add(container);
    return container;
  }

  /** A container made by someone else (a spare namespace) that is the build's from now on. */
  adopt(container: Docker.Container): void {
    if (this.ended) void this.removeOne(container);
    else this.live.add(container);
  }

  async remove(container: Docker.Container): Promise<void> {
    this.live.delete(container);
    await this.removeOne(container);
  }

  async removeAll(): Promise<void> {
    this.ended = true;
    const all = [...this.live];
    this.live.clear();
    await Promise.all(all.map((c) => this.removeOne(c)));
  }

  private removeOne(container: Docker.Container): Promise<void> {
    return this.removals ? this.removals.remove(container, { build: this.labels[LABELS.build] }) : removeContainer(container);
  }
}

/**
 * Splits the engine's multiplexed attach stream (8-byte header: stream type, size) into
 * stdout and stderr, each run of one stream in a read leaving as one write so that the SSH
 * channel sends full packets. Unlike docker-modem's demuxStream it honours backpressure: when a target is
 * full the engine stream is paused until it drains.
 */
export function demux(source: NodeJS.ReadableStream, stdout: BatchingSink, stderr: BatchingSink): Promise<void> {
  return new Promise((resolve, reject) => {
    const header = Buffer.alloc(8);
    let headerBytes = 0;
    let frameLeft = 0;
    let target = stdout;
    source.on('data', (chunk: Buffer) => {
      const pieces: Array<{ to: BatchingSink; start: number; end: number }> = [];
      for (let at = 0; at < chunk.length;) {
        if (frameLeft === 0) {
          // A header may itself be split across reads.
          const take = Math.min(8 - headerBytes, chunk.length - at);
          chunk.copy(header, headerBytes, at, at + take);
          headerBytes += take;
          at += take;
          if (headerBytes < 8) break;
          headerBytes = 0;
          target = header[0] === 2 ? stderr : stdout;
          frameLeft = header.readUInt32BE(4);
          continue;
        }
        const end = Math.min(chunk.length, at + frameLeft);
        pieces.push({ to: target, start: at, end });
        frameLeft -= end - at;
        at = end;
      }
      let blocked: Sink | undefined;
      if (pieces.length && pieces.every((p) => p.to === pieces[0].to)) {
        // The usual case, one stream: the payloads are moved together over the headers inside
        // the read's own buffer, which nothing else holds, instead of into a new one.
        let length = 0;
        for (const p of pieces) length += chunk.copy(chunk, pieces[0].start + length, p.start, p.end);
        if (!pieces[0].to.write(chunk.subarray(pieces[0].start, pieces[0].start + length))) blocked = pieces[0].to;
      } else {
        // Both streams: corked, so that consecutive pieces of one stream leave as one write
        // (UserOutput keeps the order of the two streams).
        stdout.cork();
        stderr.cork();
        for (const p of pieces) if (!p.to.write(chunk.subarray(p.start, p.end))) blocked = p.to;
        stdout.uncork();
        stderr.uncork();
      }
      if (blocked) {
        source.pause();
        blocked.once('drain', () => source.resume());
      }
    });
    source.on('end', () => resolve());
    source.on('close', () => resolve());
    source.on('error', reject);
  });
}

/** How runAttached reports to the build's watchdog: the user code it runs, for the messages. */
export interface AttachedWatch {
  watchdog: Watchdog;
  /** "running build.sh": also names the step when the engine goes away meanwhile (see waitForExit). */
  doing: string;
}

/** Starts a created container with its output attached and returns its exit code once all output is out. */
/** onStarted: called once the container runs, for work that should not compete with its start. */
export async function runAttached(container: Docker.Container, stdout: BatchingSink, stderr: BatchingSink, signal: AbortSignal, watch?: AttachedWatch, onStarted?: () => void): Promise<number> {
  const engine = (doing: string) => ({ source: 'the engine', doing, hint: ENGINE_HINT });
  const doing = watch?.doing ?? 'running a container';
  // Without a watchdog (the bench's reference), each operation runs as it is.
  const guard = <T>(doing: string, run: (progress: () => void) => Promise<T>) => (watch ? watch.watchdog.guard(engine(doing), run) : run(() => {}));
  // Hijacked (upgraded to a raw socket), the output skips Node's HTTP parser: about a tenth of the
  // server's CPU while streaming, in a profile. Aborting the request no longer reaches that socket, so the
  // signal closes it here.
  const stream = await guard(`attaching to the container for ${watch?.doing}`, () =>
    container.attach({ stream: true, stdout: true, stderr: true, hijack: true, abortSignal: signal } as Docker.ContainerAttachOptions)) as NodeJS.ReadWriteStream & { destroy(): void };
  const close = () => stream.destroy();
  signal.addEventListener('abort', close, { once: true });
  try {
    let progress = () => {};
    stream.on('data', () => progress());
    const drained = demux(stream, stdout, stderr);
    await guard(`starting the container for ${watch?.doing}`, () => container.start());
    onStarted?.();
    // User code may print nothing for long: the engine is probed meanwhile instead (src/docker/watchdog.ts).
    const wait = () => waitForExit(container, signal, doing);
    const code = await (watch ? watch.watchdog.whileUserCode(engine(watch.doing), wait) : wait());
    // The container has exited: what is left of its output must keep coming.
    await guard(`reading the last output of ${watch?.doing}`, (p) => {
      progress = p;
      return drained;
    });
    return code;
  } catch (err) {
    // The attach stream or the start cut by an engine that died: the same fault as a cut wait.
    if (!signal.aborted && isEngineConnectionLoss(err)) throw errors.engineLost(doing, connectionLossDetail(err));
    throw err;
  } finally {
    signal.removeEventListener('abort', close);
    close();
  }
}

/** Makes sure an image is on the engine, pulling it when it is not, as `docker run` would. */
export async function ensureImage(
  docker: Docker,
  ref: string,
  role: string,
  auth: Docker.AuthConfig | undefined,
  signal: AbortSignal,
  onProgress: (line: string) => void,
  onMissing: (detail: string) => Error,
  watchdog?: Watchdog,
): Promise<void> {
  const guard = <T>(doing: string, run: (progress: () => void) => Promise<T>) =>
    (watchdog ? watchdog.guard({ source: 'the engine', doing, hint: ENGINE_HINT }, run) : run(() => {}));
  try {
    await guard(`looking up the ${role} image ${ref}`, () => docker.getImage(ref).inspect({ abortSignal: signal } as object));
    return;
  } catch (err) {
    if (statusOf(err) !== 404) throw err;
  }
  onProgress(`${role} image ${ref} is not on the engine; pulling it`);
  try {
    await guard(`pulling the ${role} image ${ref}`, async (progress) => {
      const stream = await docker.pull(ref, { authconfig: auth, abortSignal: signal } as object);
      stream.on('data', progress);
      await followStream(stream, () => {});
    });
  } catch (err) {
    if (signal.aborted) throw err;
    throw onMissing(engineMessage(err));
  }
}
