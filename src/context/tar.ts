import { EventEmitter } from 'node:events';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import { errors } from '../model/errors.js';
import type { ContextFilter } from './filter.js';
import { REPO_FILE_MAX_BYTES } from './repo-file.js';

/** tar-stream's Pack is a streamx stream; dockerode and the engine take it as a Node stream. */
export type TarStream = NodeJS.ReadableStream & Readable;

/** Files up to this size are read whole: a read stream per file costs more than the many small files of a repository. */
const SMALL_FILE = 1 << 20;

/**
 * Streams a directory as a tar, entry by entry, with paths under `prefix`. Only small files
 * are held whole; large ones go to the engine as they are read, with backpressure.
 * `mtime` replaces every entry's time: the same files then make the same bytes, whenever
 * git wrote them (the builder step hashes its context so). `linkCheck` may refuse a link (see linksWithin).
 */
export function packDirectory(root: string, filter: ContextFilter, prefix = '', mtime?: Date, linkCheck?: (rel: string, linkname: string) => void): ContextStream {
  const pack = tar.pack();
  const name = (rel: string) => (prefix ? (rel ? `${prefix}/${rel}` : prefix) : rel);
  const walk = async (rel: string): Promise<void> => {
    const entries = (await readdir(path.join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const relPath = rel ? `${rel}/${entry.name}` : entry.name;
      const full = path.join(root, relPath);
      const included = filter.includes(relPath);
      const stat = await lstat(full);
      const common = { name: name(relPath), mode: stat.mode & 0o7777, mtime: mtime ?? stat.mtime, uid: 0, gid: 0 };
      if (stat.isDirectory()) {
        if (included) await addEntry(pack, { ...common, type: 'directory' });
        if (included || filter.mayIncludeBelow(relPath)) await walk(relPath);
      } else if (!included) {
        continue;
      } else if (stat.isSymbolicLink()) {
        const linkname = await readlink(full);
        linkCheck?.(relPath, linkname);
        await addEntry(pack, { ...common, type: 'symlink', linkname });
      } else if (stat.isFile() && stat.size <= SMALL_FILE) {
        const content = await readFile(full);
        await new Promise<void>((resolve, reject) => {
          const sink = pack.entry({ ...common, type: 'file', size: content.length }, (err) => (err ? reject(err) : resolve()));
          sink.end(content);
        });
      } else if (stat.isFile()) {
        const sink = pack.entry({ ...common, type: 'file', size: stat.size });
        await pipeline(createReadStream(full), sink as unknown as NodeJS.WritableStream);
      }
      // Sockets, FIFOs and devices have no place in a build context.
    }
  };
  // The failure is reported through contextError; an 'error' event nobody listens to would end the process.
  pack.on('error', () => {});
  (async () => {
    if (prefix) await addEntry(pack, { name: prefix, type: 'directory', mode: 0o755, uid: 0, gid: 0 });
    await walk('');
    pack.finalize();
  })().catch((err: Error) => {
    (pack as unknown as ContextStream).contextError ??= err;
    pack.destroy(err);
  });
  return pack as unknown as ContextStream;
}

function addEntry(pack: tar.Pack, header: Parameters<tar.Pack['entry']>[0]): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
}

/** A build context being streamed; contextError is why it stopped early, if it did (the engine only sees a cut tar). */
export type ContextStream = TarStream & { contextError?: Error };

/** Entry types a build context keeps: devices, FIFOs and sockets have no place in one. */
const KEPT_TYPES = new Set(['file', 'contiguous-file', 'directory', 'symlink', 'link']);
/**
 * Matching work (NFA steps, see dockerignore.ts) after which the repack lets the server's other
 * clients run before the next entry: a tar chunk holds up to ~128 small entries, and without
 * this all of them would be matched in one go.
 */
const YIELD_STEPS = 200_000;

/**
 * Re-packs a tar from the engine (getArchive of /project, entries under "project/") as a
 * build context: the prefix is stripped (from hard links' targets too) and the filter applied
 * while the bytes stream through. A hard link whose target is left out cannot be sent
 * (its content went by unread): EHARDLINK.
 */
export function repackArchive(source: NodeJS.ReadableStream, stripPrefix: string, filter: ContextFilter): ContextStream {
  return repackArchives([async () => source], stripPrefix, filter, new ArchiveSources()).context;
}

/**
 * The engine's archives being read for one context, one after the other: 'data' on each chunk
 * (the watchdog's progress), and destroy() ends the one open (left unread it would hold the
 * builder's lock, see containers.ts) and opens no more.
 */
export class ArchiveSources extends EventEmitter {
  current?: Readable;
  destroyed = false;

  destroy(): void {
    this.destroyed = true;
    this.current?.destroy();
  }
}

/** A partial context met a link it cannot follow within itself: the caller sends the whole context instead. */
export class LinkOutOfPart extends Error {}

/**
 * A check for repackArchives of a context that holds only some top-level names: a symbolic link
 * whose target (as BuildKit resolves it, an absolute one from the context's root) lies outside
 * those names throws LinkOutOfPart, since a COPY through it would find nothing.
 */
export function linksWithin(names: readonly string[]): (inner: string, linkname: string) => void {
  return (inner, linkname) => {
    const resolved = path.posix.normalize(linkname.startsWith('/') ? linkname : `${path.posix.dirname(inner)}/${linkname}`).replace(/^\/+/, '');
    if (!names.includes(resolved.split('/')[0])) throw new LinkOutOfPart(`${inner} links to ${linkname}, outside the part of the context sent`);
  };
}

/**
 * repackArchive over several archives in turn (getArchive of /project/NAME for a few NAMEs,
 * entries under "NAME/": stripPrefix ''), as one context. An opener answering undefined (the
 * path is not there) adds nothing. Each archive is asked for only once the one before it has been
 * read to its end: never two archives of one container at once.
 */
export function repackArchives(opens: Array<() => Promise<NodeJS.ReadableStream | undefined>>, stripPrefix: string, filter: ContextFilter, sources: ArchiveSources, linkCheck?: (inner: string, linkname: string) => void): { context: ContextStream } {
  const pack = tar.pack();
  const out = pack as unknown as ContextStream;
  // The failure is reported through contextError; an 'error' event nobody listens to would end the process.
  pack.on('error', () => {});
  const fail = (err: Error) => {
    out.contextError ??= err;
    sources.destroy();
    pack.destroy(err);
  };
  const innerOf = (name: string) => {
    const rel = name.replace(/^\.?\/?/, '').replace(/\/$/, '');
    if (!stripPrefix) return rel;
    return rel === stripPrefix ? '' : rel.startsWith(`${stripPrefix}/`) ? rel.slice(stripPrefix.length + 1) : undefined;
  };
  let yieldedAt = 0;
  const one = (source: Readable) => new Promise<void>((resolve, reject) => {
    const extract = tar.extract();
    extract.on('entry', (header, stream, next) => {
      const handle = () => {
        const inner = innerOf(header.name);
        let keep: boolean;
        let linkname = header.linkname;
        try {
          keep = !!inner && KEPT_TYPES.has(header.type ?? 'file') && filter.includes(inner);
          if (keep && header.type === 'link') {
            const target = innerOf(header.linkname ?? '');
            if (!target || !filter.includes(target)) throw errors.hardLink(inner!, target ?? header.linkname ?? '?');
            linkname = target;
          }
          if (keep && header.type === 'symlink') linkCheck?.(inner!, header.linkname ?? '');
        } catch (err) {
          extract.destroy(err as Error);
          return;
        }
        if (!keep) {
          stream.on('end', next);
          stream.resume();
          return;
        }
        const type = header.type === 'contiguous-file' ? 'file' : header.type;
        const outHeader = { ...header, type, name: inner!, linkname, uid: 0, gid: 0, uname: undefined, gname: undefined };
        const entry = pack.entry(outHeader, (err) => next(err ?? undefined));
        stream.pipe(entry as unknown as NodeJS.WritableStream);
      };
      if (filter.steps - yieldedAt > YIELD_STEPS) {
        yieldedAt = filter.steps;
        setImmediate(handle);
      } else {
        handle();
      }
    });
    extract.on('finish', () => resolve());
    extract.on('error', (err: Error) => reject(err));
    source.on('error', (err: Error) => extract.destroy(err));
    source.on('data', () => sources.emit('data'));
    source.pipe(extract as unknown as NodeJS.WritableStream);
  });
  (async () => {
    for (const open of opens) {
      if (sources.destroyed) throw new Error('the context was abandoned');
      const source = (await open()) as Readable | undefined;
      if (!source) continue;
      sources.current = source;
      if (sources.destroyed) source.destroy();
      await one(source);
      sources.current = undefined;
    }
    pack.finalize();
  })().catch((err: Error) => fail(err));
  return { context: out };
}

const TAR_KINDS: Record<string, string> = {
  directory: 'a directory', symlink: 'a symbolic link', link: 'a hard link', fifo: 'a named pipe',
  'character-device': 'a device node', 'block-device': 'a device node',
};

/**
 * Reads the one file of a getArchive of a single path: only the first entry, only if it is a
 * regular file, at most maxBytes. Nothing more is read: the source is destroyed at once, so a
 * `.dockerignore` that build.sh made a directory holding a 3 GB sparse file costs one header.
 */
export function readSingleFile(source: NodeJS.ReadableStream, name = '.dockerignore', where = 'what build.sh left in /project', maxBytes = REPO_FILE_MAX_BYTES): Promise<string> {
  return new Promise((resolve, reject) => {
    const extract = tar.extract();
    let settled = false;
    const finish = (err: Error | undefined, text = '') => {
      if (settled) return;
      settled = true;
      (source as Readable).unpipe(extract as unknown as NodeJS.WritableStream);
      (source as Readable).destroy();
      extract.destroy();
      if (err) reject(err);
      else resolve(text);
    };
    extract.on('entry', (header, stream) => {
      const type = header.type ?? 'file';
      if (type !== 'file' && type !== 'contiguous-file') return finish(errors.repoFile(name, TAR_KINDS[type] ?? 'not a regular file', where));
      if ((header.size ?? 0) > maxBytes) return finish(errors.repoFileTooLarge(name, maxBytes, where));
      const parts: Buffer[] = [];
      stream.on('data', (chunk: unknown) => parts.push(chunk as Buffer));
      stream.on('end', () => finish(undefined, Buffer.concat(parts).toString('utf8')));
      stream.on('error', (err: Error) => finish(err));
    });
    extract.on('finish', () => finish(undefined, ''));
    extract.on('error', (err: Error) => finish(err));
    (source as Readable).on('error', (err: Error) => finish(err));
    source.pipe(extract as unknown as NodeJS.WritableStream);
  });
}
