import { createHash } from 'node:crypto';
import { mkdir, readdir, stat, unlink, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type Docker from 'dockerode';
import { engineMessage, statusOf } from '../docker/engine.js';
import { errors } from '../model/errors.js';
import { inBackground, type BuildContext } from './context.js';
import type { ServerLog } from '../log/server-log.js';
import type { Config } from './config.js';
import { serviceSlug } from '../model/service-slug.js';

/*
 * Caches that outlive a build (build.sh's `#build_cache=/root/.cache/go-build /go/pkg/mod`): one
 * Docker volume per service and path on the engine, mounted into the builder at that path, so
 * the next build of the same service starts warm. Only builds of that service mount it, one at a
 * time (the service lock). What one build leaves there the next one trusts: a repository can
 * poison its own service's caches, never another's (the volume name holds a hash of the id).
 */

/** Labels of a cache volume: the service (the size bound and the reset find them by it) and the path. */
export const CACHE_OF_LABEL = 'io.buildbot.cache-of';
export const CACHE_PATH_LABEL = 'io.buildbot.cache-path';
export const MAX_CACHE_PATHS = 8;
const MAX_CACHE_PATH = 255;
// Where the build's own files go, and what the kernel and the engine own: never a cache.
const RESERVED = ['/project', '/proc', '/sys', '/dev'];
const CACHE_PATH = /^(\/[A-Za-z0-9._@+-]+)+$/;
const MIB = 1024 * 1024;
// The sizes are asked for in the background while the image builds; an engine that does not answer this long measures nothing.
const MEASURE_TIMEOUT_MS = 60_000;

/** The volume of one cache path of a service. */
export const cacheVolumeName = (serviceId: string, cachePath: string) =>
  `buildbot-cache-${serviceSlug(serviceId)}-${createHash('sha256').update(cachePath).digest('hex').slice(0, 12)}`;

/**
 * The paths of a #build_cache line: absolute, no "." or "..", letters, digits and ._@+- only, at
 * most MAX_CACHE_PATHS of at most 255 characters, none inside another, none of /project (the
 * build's source), /proc, /sys, /dev or /.
 */
export function parseCachePaths(value: string): string[] {
  const words = value.split(/\s+/).filter(Boolean);
  if (words.length === 0) throw errors.badBuildCache('it names no path');
  if (words.length > MAX_CACHE_PATHS) throw errors.badBuildCache(`it names ${words.length} paths; at most ${MAX_CACHE_PATHS} are taken`);
  const paths: string[] = [];
  for (const word of words) {
    const shown = word.length > 80 ? `${word.slice(0, 80)}…` : word;
    if (word.length > MAX_CACHE_PATH) throw errors.badBuildCache(`"${shown}" is longer than ${MAX_CACHE_PATH} characters`);
    if (!word.startsWith('/')) throw errors.badBuildCache(`"${shown}" is not absolute; give absolute paths in the builder, e.g. /root/.cache/go-build`);
    const p = word.replace(/\/+$/, '');
    if (!CACHE_PATH.test(p) || p.split('/').some((part) => part === '.' || part === '..')) {
      throw errors.badBuildCache(`"${shown}" is not a plain absolute path (letters, digits and ._@+- between slashes; no "." or ".." parts)`);
    }
    if (RESERVED.some((r) => p === r || p.startsWith(`${r}/`))) throw errors.badBuildCache(`"${shown}" is or is inside ${RESERVED.find((r) => p === r || p.startsWith(`${r}/`))}, which a cache may not cover`);
    if (paths.some((q) => q === p || p.startsWith(`${q}/`) || q.startsWith(`${p}/`))) throw errors.badBuildCache(`"${shown}" is, holds, or is inside another path of the line`);
    paths.push(p);
  }
  return paths;
}

/** The cache volumes of a service on the engine. */
async function volumesOf(ctx: BuildContext): Promise<Docker.VolumeInspectInfo[]> {
  const answer = await ctx.watchdog.engine('listing the build caches of the service', () =>
    ctx.docker.listVolumes({ filters: { label: [`${CACHE_OF_LABEL}=${ctx.request.serviceId}`] }, abortSignal: ctx.signal } as object));
  return answer.Volumes ?? [];
}

async function removeVolume(docker: Docker, name: string, signal?: AbortSignal): Promise<void> {
  await docker.getVolume(name).remove({ abortSignal: signal } as object).catch((err: unknown) => {
    if (statusOf(err) !== 404) throw err;
  });
}

/**
 * Where the marks of an engine's caches are kept: a volume lives on one engine, so two engines'
 * caches of one service (named alike) are used and expire apart. `@` cannot start a volume name.
 */
export const cacheMarksDir = (config: Pick<Config, 'workDir' | 'engineName'>) =>
  path.join(config.workDir, '.build-caches', ...(config.engineName ? [`@${config.engineName}`] : []));

/** Marks a cache as used now (the file's time), for the removal of caches unused for --build-cache-days. */
async function touch(config: Pick<Config, 'workDir' | 'engineName'>, volume: string): Promise<void> {
  const dir = cacheMarksDir(config);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, volume);
  const now = new Date();
  await utimes(file, now, now).catch(() => writeFile(file, '', { mode: 0o600 }));
}

/**
 * The mounts of the builder for the build's cache paths: the service's volumes (made and
 * labelled on first use; emptied first with --reset_build_cache), or, with --no_build_cache,
 * fresh anonymous volumes that go with the builder, leaving the kept ones as they are. Each
 * starts, as a new volume does, with what the builder image holds at its path.
 */
export async function cacheMounts(ctx: BuildContext, paths: readonly string[]): Promise<Docker.MountConfig> {
  const { serviceId, build } = ctx.request;
  if (build.noBuildCache && paths.length) {
    ctx.out.line(`--no_build_cache: build.sh runs with fresh caches at ${paths.join(' ')}; the kept ones are left as they are`);
    // No source: an anonymous volume, removed with the builder (removals pass v=true).
    return paths.map((target) => ({ Type: 'volume', Source: '', Target: target }));
  }
  if (build.resetBuildCache) {
    const old = await volumesOf(ctx);
    for (const volume of old) await ctx.watchdog.engine('removing a build cache (--reset_build_cache)', () => removeVolume(ctx.docker, volume.Name, ctx.signal));
    ctx.out.line(`--reset_build_cache: ${old.length} kept cache${old.length === 1 ? '' : 's'} of ${serviceId} removed; build.sh starts with fresh ones`);
  }
  const mounts: Docker.MountConfig = [];
  for (const target of paths) {
    const name = cacheVolumeName(serviceId, target);
    // Idempotent: an existing volume is answered as it is.
    await ctx.watchdog.engine('making a build cache volume', () =>
      ctx.docker.createVolume({ Name: name, Labels: { [CACHE_OF_LABEL]: serviceId, [CACHE_PATH_LABEL]: target }, abortSignal: ctx.signal } as Docker.VolumeCreateOptions));
    await touch(ctx.config, name);
    mounts.push({ Type: 'volume', Source: name, Target: target });
  }
  return mounts;
}

/**
 * After build.sh: the sizes of the service's caches are asked for in the background (the engine
 * measures its volumes: nothing the build wrote is trusted), and once the build's containers are
 * gone, caches over --build-cache-max-mb together are dropped, largest first, each with a line
 * saying so. The next build starts that one cold.
 */
export function boundCaches(ctx: BuildContext, paths: readonly string[]): void {
  if (ctx.request.build.noBuildCache || !paths.length) return;
  const names = new Map(paths.map((p) => [cacheVolumeName(ctx.request.serviceId, p), p]));
  const sizes = inBackground(ctx, () => ctx.watchdog.engine('measuring the build caches', async () => {
    const df = await (ctx.docker.df as (opts: object) => Promise<unknown>).call(ctx.docker, { abortSignal: AbortSignal.any([ctx.signal, AbortSignal.timeout(MEASURE_TIMEOUT_MS)]) }) as { Volumes?: Array<{ Name: string; UsageData?: { Size?: number } }> };
    return (df.Volumes ?? []).filter((v) => names.has(v.Name)).map((v) => ({ name: v.Name, size: v.UsageData?.Size ?? -1 }));
  })).catch((err: unknown) => {
    ctx.log('build-cache-measure-failed', { build: ctx.buildId, error: engineMessage(err) });
    return [];
  });
  const max = ctx.config.buildCacheMaxBytes;
  let done: Promise<void> | undefined;
  const drop = async () => {
    const measured = (await sizes).filter((v) => v.size >= 0).sort((a, b) => b.size - a.size);
    let total = measured.reduce((sum, v) => sum + v.size, 0);
    if (total <= max) return;
    // A volume goes only once no container uses it: the builder's removal, started by the test step;
    // a build that ended before it removes its containers here, not after its exit.
    await (ctx.builderRemoved ?? ctx.containers.removeAll());
    for (const volume of measured) {
      if (total <= max) break;
      try {
        await removeVolume(ctx.docker, volume.name, AbortSignal.timeout(MEASURE_TIMEOUT_MS));
        ctx.out.line(`build cache ${names.get(volume.name)} of ${ctx.request.serviceId} dropped: the service's caches held ${(total / MIB).toFixed(1)} MB, over the server's ${(max / MIB).toFixed(0)} MB (--build-cache-max-mb); the next build starts it empty`);
        total -= volume.size;
      } catch (err) {
        ctx.log('build-cache-drop-failed', { build: ctx.buildId, volume: volume.name, error: engineMessage(err) });
      }
    }
  };
  // Before the result line on success; in the cleanup (after the containers went) otherwise.
  ctx.boundCaches = () => (done ??= drop());
  ctx.cleanups.push(() => ctx.boundCaches!());
}

/**
 * Removes the caches of every service not used for `days` days (the time of their mark in
 * <work-dir>/.build-caches, or the volume's creation when it has none). A cache in use by a
 * running builder is refused by the engine and stays. Returns how many went.
 */
export async function removeUnusedCaches(docker: Docker, config: Pick<Config, 'workDir' | 'engineName'>, days: number, log: ServerLog, now = Date.now()): Promise<number> {
  const cutoff = now - days * 24 * 3600 * 1000;
  const dir = cacheMarksDir(config);
  const { Volumes } = await docker.listVolumes({ filters: { label: [CACHE_OF_LABEL] }, abortSignal: AbortSignal.timeout(MEASURE_TIMEOUT_MS) } as object);
  let removed = 0;
  for (const volume of Volumes ?? []) {
    const mark = path.join(dir, volume.Name);
    const used = await stat(mark).then((s) => s.mtimeMs, () => Date.parse((volume as { CreatedAt?: string }).CreatedAt ?? '') || now);
    if (used >= cutoff) continue;
    try {
      await removeVolume(docker, volume.Name, AbortSignal.timeout(MEASURE_TIMEOUT_MS));
      await unlink(mark).catch(() => undefined);
      removed++;
      log('build-cache-expired', { volume: volume.Name, service: volume.Labels?.[CACHE_OF_LABEL], unused_days: Math.floor((now - used) / 86_400_000) });
    } catch (err) {
      if (statusOf(err) !== 409) log('build-cache-expire-failed', { volume: volume.Name, error: engineMessage(err) });
    }
  }
  // Marks of caches removed by hand go too.
  const names = new Set((Volumes ?? []).map((v) => v.Name));
  for (const entry of await readdir(dir).catch(() => [] as string[])) if (!names.has(entry)) await unlink(path.join(dir, entry)).catch(() => undefined);
  return removed;
}
