import { createReadStream } from 'node:fs';
import { lstat, readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import tar from 'tar-stream';
import type { ContextFilter } from './filter.js';

/** tar-stream's Pack is a streamx stream; dockerode and the engine take it as a Node stream. */
export type TarStream = NodeJS.ReadableStream & Readable;

/** Files up to this size are read whole: a read stream per file costs more than the many small files of a repository. */
const SMALL_FILE = 1 << 20;

/**
 * Streams a directory as a tar, entry by entry, with paths under `prefix`. Only small files
 * are held whole; large ones go to the engine as they are read, with backpressure.
 */
export function packDirectory(root: string, filter: ContextFilter, prefix = ''): TarStream {
  const pack = tar.pack();
  const name = (rel: string) => (prefix ? (rel ? `${prefix}/${rel}` : prefix) : rel);
  const walk = async (rel: string): Promise<void> => {
    const entries = (await readdir(path.join(root, rel), { withFileTypes: true })).sort((a, b) => (a.name < b.name ? -1 : 1));
    for (const entry of entries) {
      const relPath = rel ? `${rel}/${entry.name}` : entry.name;
      const full = path.join(root, relPath);
      const included = filter.includes(relPath);
      const stat = await lstat(full);
      const common = { name: name(relPath), mode: stat.mode & 0o7777, mtime: stat.mtime, uid: 0, gid: 0 };
      if (stat.isDirectory()) {
        if (included) await addEntry(pack, { ...common, type: 'directory' });
        if (included || filter.mayIncludeBelow(relPath)) await walk(relPath);
      } else if (!included) {
        continue;
      } else if (stat.isSymbolicLink()) {
        await addEntry(pack, { ...common, type: 'symlink', linkname: await readlink(full) });
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
  (async () => {
    if (prefix) await addEntry(pack, { name: prefix, type: 'directory', mode: 0o755, uid: 0, gid: 0 });
    await walk('');
    pack.finalize();
  })().catch((err: Error) => pack.destroy(err));
  return pack as unknown as TarStream;
}

function addEntry(pack: tar.Pack, header: Parameters<tar.Pack['entry']>[0]): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
}

/**
 * Re-packs a tar from the engine (getArchive of /project, entries under "project/") as a
 * build context: the prefix is stripped and the filter applied while the bytes stream through.
 */
export function repackArchive(source: NodeJS.ReadableStream, stripPrefix: string, filter: ContextFilter): TarStream {
  const extract = tar.extract();
  const pack = tar.pack();
  extract.on('entry', (header, stream, next) => {
    const rel = header.name.replace(/^\.?\/?/, '').replace(/\/$/, '');
    const inner = rel === stripPrefix ? '' : rel.startsWith(`${stripPrefix}/`) ? rel.slice(stripPrefix.length + 1) : undefined;
    if (!inner || !filter.includes(inner)) {
      stream.on('end', next);
      stream.resume();
      return;
    }
    const outHeader = { ...header, name: inner, uid: 0, gid: 0, uname: undefined, gname: undefined };
    const out = pack.entry(outHeader, (err) => next(err ?? undefined));
    stream.pipe(out as unknown as NodeJS.WritableStream);
  });
  extract.on('finish', () => pack.finalize());
  extract.on('error', (err: Error) => pack.destroy(err));
  (source as Readable).on('error', (err: Error) => extract.destroy(err));
  source.pipe(extract as unknown as NodeJS.WritableStream);
  return pack as unknown as TarStream;
}

/** Reads one small file out of a tar stream (getArchive of a single path); a symlink reads as empty. */
export function readSingleFile(source: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const extract = tar.extract();
    const parts: Buffer[] = [];
    extract.on('entry', (header, stream, next) => {
      stream.on('data', (chunk: unknown) => {
        if (header.type === 'file') parts.push(chunk as Buffer);
      });
      stream.on('end', next);
    });
    extract.on('finish', () => resolve(Buffer.concat(parts).toString('utf8')));
    extract.on('error', reject);
    source.pipe(extract as unknown as NodeJS.WritableStream);
  });
}
