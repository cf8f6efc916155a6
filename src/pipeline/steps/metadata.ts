import { lstat } from 'node:fs/promises';
import path from 'node:path';
import { readRepoFile, writeRepoFile } from '../../context/repo-file.js';
import { errors, isBuildError } from '../../model/errors.js';
import { DEFAULT_DOCKERFILE, validateDockerfilePath } from '../../request/build-options.js';
import { shellSplit } from '../../request/shell-split.js';
import type { Step } from '../context.js';
import { parseCachePaths } from '../build-cache.js';

/** The longest #test_in_container_entrypoint line read; a command line longer than this is no command line. */
export const TEST_LINE_MAX = 64 * 1024;

/** Reads what the repository says about its own build, and writes VERSION for it. */
export const metadataStep: Step = {
  name: 'metadata',
  describe: () => 'VERSION, build.sh and Dockerfile',
  async run(ctx) {
    const dir = ctx.checkoutDir!;
    const version = ctx.request.tags[0];
    // Never through a link: `VERSION -> ../ssh_host_ed25519_key` would overwrite the server's host key.
    await writeRepoFile(dir, 'VERSION', `${version}\n`);

    const dockerfileName = ctx.request.build.dockerfile;
    if (dockerfileName !== DEFAULT_DOCKERFILE) await assertRealDirectories(dir, dockerfileName, () => errors.dockerfileOutsideRepo(dockerfileName));
    const dockerfile = await readRepoFile(dir, dockerfileName);
    if (dockerfile === undefined) {
      throw dockerfileName === DEFAULT_DOCKERFILE ? errors.missingDockerfile(ctx.commit!.slice(0, 12)) : errors.missingCustomDockerfile(dockerfileName, ctx.commit!.slice(0, 12));
    }
    const buildScript = await readRepoFile(dir, 'build.sh');
    const builderImage = buildScript === undefined ? undefined : builderImageOf(buildScript);
    const builderFile = buildScript === undefined ? undefined : builderDockerfileOf(buildScript);
    if (builderImage && builderFile !== undefined) throw errors.bothBuilderHeaders();
    if (buildScript !== undefined && !builderImage && builderFile === undefined) throw errors.buildScriptWithoutImage();
    const builderDockerfile = builderFile === undefined ? undefined : await checkBuilderDockerfile(dir, builderFile, ctx.commit!.slice(0, 12));
    const cacheLine = buildScript === undefined ? undefined : headerOf(buildScript, 'build_cache');
    const buildCaches = cacheLine === undefined ? [] : parseCachePaths(cacheLine);

    const { testLine, imageFrom } = scanDockerfile(dockerfile);
    let testEntrypoint: string[] | undefined;
    if (testLine !== undefined) {
      if (testLine.length > TEST_LINE_MAX) throw errors.badTestEntrypoint(`it is longer than ${TEST_LINE_MAX / 1024} KiB`);
      try {
        testEntrypoint = shellSplit(testLine.trim(), '#test_in_container_entrypoint');
      } catch (err) {
        throw isBuildError(err) ? errors.badTestEntrypoint(err.message) : err;
      }
      if (testEntrypoint.length === 0) throw errors.badTestEntrypoint('it names no command');
    }
    ctx.metadata = { version, builderImage, builderDockerfile, buildCaches, testEntrypoint, imageFrom };
    const builder = builderImage ? `build.sh runs in ${builderImage}` : builderDockerfile ? `build.sh runs in an image built from ${builderDockerfile}` : 'no build.sh';
    ctx.out.line(`VERSION ${version}; ${builder}; ${testEntrypoint ? 'in-image test' : 'no in-image test'}`);
  },
};

/*
 * The files are scanned line by line with plain string operations, each line once: a
 * multiline regular expression such as /^\s*FROM/m costs time quadratic in the number of
 * blank lines (two million of them stalled the server), and repository content decides
 * that number. With files capped at REPO_FILE_MAX_BYTES the whole scan is linear and small.
 */

/** Calls visit(line) for each line whose first non-space character is one of `firsts`; other lines cost a few comparisons. */
function eachLine(text: string, firsts: string, visit: (line: string) => boolean | void): void {
  for (let start = 0; start <= text.length;) {
    let end = text.indexOf('\n', start);
    if (end < 0) end = text.length;
    let at = start;
    while (at < end && isSpaceCode(text.charCodeAt(at))) at++;
    if (at < end && firsts.includes(text[at]) && visit(text.slice(start, end)) === true) return;
    start = end + 1;
  }
}

const isSpaceCode = (c: number) => c === 32 || (c >= 9 && c <= 13) || (c >= 0x80 && String.fromCharCode(c).trim() === '');
const isSpace = (ch: string | undefined) => ch !== undefined && ch !== '' && isSpaceCode(ch.charCodeAt(0));

function skipSpace(line: string, at: number): number {
  while (isSpace(line[at])) at++;
  return at;
}

/** The value of a `#key=value` line (spaces allowed around `#`'s key and `=`), or undefined. */
function directive(line: string, key: string): string | undefined {
  if (line[0] !== '#') return undefined;
  let at = skipSpace(line, 1);
  if (!line.startsWith(key, at)) return undefined;
  at = skipSpace(line, at + key.length);
  return line[at] === '=' ? line.slice(at + 1) : undefined;
}

/** The image of build.sh's first `#build_inside_docker_image=IMAGE` line (one word), if any. */
export function builderImageOf(buildScript: string): string | undefined {
  let image: string | undefined;
  eachLine(buildScript, '#', (line) => {
    const value = directive(line, 'build_inside_docker_image')?.trim();
    if (value && !/\s/.test(value)) image = value;
    return image !== undefined;
  });
  return image;
}

/** The value of build.sh's first `#key=…` line, trimmed and not yet checked, if any. */
function headerOf(buildScript: string, key: string): string | undefined {
  let value: string | undefined;
  eachLine(buildScript, '#', (line) => {
    value = directive(line, key)?.trim();
    return value !== undefined;
  });
  return value;
}

/** The path of build.sh's first `#build_inside_dockerfile=PATH` line, as written (not yet checked), if any. */
export const builderDockerfileOf = (buildScript: string) => headerOf(buildScript, 'build_inside_dockerfile');

const BUILDER_HEADER = '#build_inside_dockerfile';

/**
 * The builder's Dockerfile under --dockerfile's rules: relative, no "..", every directory on
 * its way a real one, the file itself a regular file of at most REPO_FILE_MAX_BYTES; its
 * folder is the builder's build context. Returns the normalized path.
 */
async function checkBuilderDockerfile(dir: string, raw: string, revision: string): Promise<string> {
  let file: string;
  try {
    file = validateDockerfilePath(raw, BUILDER_HEADER, 'ci/builder.Dockerfile');
  } catch (err) {
    throw isBuildError(err) ? errors.badBuilderDockerfile(err.message) : err;
  }
  await assertRealDirectories(dir, file, () => errors.builderDockerfileOutsideRepo(file));
  if ((await readRepoFile(dir, file)) === undefined) throw errors.missingBuilderDockerfile(file, revision);
  return file;
}

/** The Dockerfile's first #test_in_container_entrypoint value and the image of its last FROM line. */
export function scanDockerfile(dockerfile: string): { testLine?: string; imageFrom?: string } {
  let testLine: string | undefined;
  let imageFrom: string | undefined;
  eachLine(dockerfile, '#Ff', (line) => {
    if (testLine === undefined) testLine = directive(line, 'test_in_container_entrypoint');
    const from = fromImage(line);
    if (from !== undefined) imageFrom = from;
  });
  return { testLine, imageFrom };
}

/** `FROM [--flag=…]… IMAGE [AS name]` -> IMAGE (instruction case-insensitive, as docker reads it). */
function fromImage(line: string): string | undefined {
  const at = skipSpace(line, 0);
  if (line.slice(at, at + 4).toUpperCase() !== 'FROM' || !isSpace(line[at + 4])) return undefined;
  for (const word of line.slice(at + 5).split(/\s+/)) {
    if (word && !word.startsWith('--')) return word;
  }
  return undefined;
}

/** readRepoFile checks the file itself; a Dockerfile in a subdirectory also needs every directory on its way to be real. */
async function assertRealDirectories(dir: string, relPath: string, outside: () => Error): Promise<void> {
  const parts = relPath.split('/').slice(0, -1);
  for (let i = 1; i <= parts.length; i++) {
    const stat = await lstat(path.join(dir, ...parts.slice(0, i))).catch(() => undefined);
    if (stat === undefined) return; // missing: reported as a missing Dockerfile
    if (!stat.isDirectory()) throw outside();
  }
}
