import { readdirSync, readFileSync } from 'node:fs';
import Docker from 'dockerode';
import tar from 'tar-stream';
import { testEnv } from './env.js';

export const docker = new Docker();

/** Containers a build left behind: the product labels every container it creates. */
/**
 * The containers of builds, once those of ended builds have gone: a server removes them after the
 * build's exit record, when no build is starting (src/docker/background.ts), so this waits up to
 * 20 s for none to be left and then answers what is left.
 */
export async function buildContainers(): Promise<Docker.ContainerInfo[]> {
  const list = () => docker.listContainers({ all: true, filters: { label: ['io.buildbot.build'] } });
  for (const end = Date.now() + 20_000; Date.now() < end; await new Promise((resolve) => setTimeout(resolve, 100))) {
    const now = await list();
    if (!now.length) return now;
  }
  return list();
}

/** The build containers of one role: builder, test, or network (a namespace made ahead, src/docker/netns.ts). */
export async function buildContainersOf(role: string): Promise<Docker.ContainerInfo[]> {
  return docker.listContainers({ all: true, filters: { label: [`io.buildbot.role=${role}`] } });
}

export async function allContainerIds(): Promise<string[]> {
  return (await docker.listContainers({ all: true })).map((c) => c.Id).sort();
}

/**
 * Processes on this machine whose command line is exactly argv. BuildKit runs RUN steps
 * outside the engine's containers, so this is where a step still running shows.
 */
export function processesRunning(argv: string[]): number[] {
  const wanted = `${argv.join('\0')}\0`;
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).filter((pid) => {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8') === wanted;
    } catch {
      return false;
    }
  }).map(Number);
}

function drain(stream: NodeJS.ReadableStream): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.on('data', () => {});
    stream.on('end', () => resolve());
    stream.on('error', reject);
  });
}

/**
 * Pulls an image back from the registry (after dropping the local copy, so the bytes really
 * come from the registry) and returns the files under `dir`, path → content.
 */
export async function pulledFiles(ref: string, dir: string): Promise<Map<string, string>> {
  const env = testEnv();
  await docker.getImage(ref).remove({ force: true }).catch(() => undefined);
  const auth = { username: env.registryUser, password: env.registryPassword, serveraddress: env.registry };
  await drain(await docker.pull(ref, { authconfig: auth }));
  const container = await docker.createContainer({ Image: ref, Cmd: ['true'], Labels: { 'buildbot.test': '1' }, HostConfig: { NetworkMode: 'none' } });
  try {
    const archive = await container.getArchive({ path: dir });
    return await readTar(archive);
  } finally {
    await container.remove({ force: true });
  }
}

function readTar(source: NodeJS.ReadableStream): Promise<Map<string, string>> {
  return new Promise((resolve, reject) => {
    const files = new Map<string, string>();
    const extract = tar.extract();
    extract.on('entry', (header, stream, next) => {
      const parts: Buffer[] = [];
      stream.on('data', (d: unknown) => parts.push(d as Buffer));
      stream.on('end', () => {
        const name = header.name.replace(/\/$/, '');
        files.set(name, header.type === 'file' ? Buffer.concat(parts).toString('utf8') : `<${header.type}>`);
        next();
      });
    });
    extract.on('finish', () => resolve(files));
    extract.on('error', reject);
    source.pipe(extract as unknown as NodeJS.WritableStream);
  });
}
