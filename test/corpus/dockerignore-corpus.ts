/*
 * The .dockerignore corpus: tricky patterns, each applied by the real docker CLI's classic
 * builder (`DOCKER_BUILDKIT=0 docker build`, which applies .dockerignore itself, as our server
 * must), and what it sent recorded in test/fixtures/dockerignore-corpus.json. The unit test
 * test/unit/dockerignore.test.ts checks our matcher against that file without an engine.
 *
 *   node dist/test/corpus/dockerignore-corpus.js --write    # run docker, rewrite the fixture
 *   node dist/test/corpus/dockerignore-corpus.js --verify   # run docker, fail if it differs from the fixture
 *
 * Needs a Docker engine (DOCKER_HOST) and a small base image with `find` (CORPUS_IMAGE,
 * default buildbot-test/busybox:latest, which test/env/up.sh makes).
 */
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CorpusCase {
  name: string;
  dockerignore: string;
  files: string[];
  /** We refuse this pattern although docker takes it (its meaning differs between filepath.Match and docker's regexp). */
  refuse?: boolean;
  /** What docker sent (regular files, Dockerfile and .dockerignore left aside), or its error. */
  docker?: { included: string[] } | { error: string };
}

export const CORPUS_FILE = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'test', 'fixtures', 'dockerignore-corpus.json');

const C = (name: string, dockerignore: string, files: string[], refuse = false): CorpusCase => ({ name, dockerignore, files, ...(refuse ? { refuse } : {}) });

export const CASES: CorpusCase[] = [
  C('star at the top only', '*.log\n', ['a.log', 'sub/b.log', 'keep.txt']),
  C('double star at any depth', '**/*.log\n', ['a.log', 'sub/b.log', 'sub/deep/c.log', 'keep.txt']),
  C('plus is literal', 'key+1.pem\n', ['key+1.pem', 'keyy1.pem', 'key1.pem']),
  C('parentheses are literal', 'credentials(prod).json\n', ['credentials(prod).json', 'credentialsprod.json']),
  C('catastrophic regex is literal', '(a+)+b\n', ['(a+)+b', 'aaab', 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa']),
  C('case-sensitive', '*.TXT\n', ['Upper.TXT', 'lower.txt', 'Mixed.Txt']),
  C('exception inside an excluded directory', 'node_modules\n!node_modules/keep\n', ['node_modules/keep/a.js', 'node_modules/drop/b.js', 'node_modules/top.js', 'src/x.js']),
  C('double star directory with an exception', 'docs/**\n!docs/public\n', ['docs/a.md', 'docs/public/i.html', 'docs/public/sub/j.html', 'other/docs/a.md']),
  C('everything but src', '*\n!src\n', ['src/a.js', 'src/sub/b.js', 'lib/c.js', 'top.txt']),
  C('exception that does not start with the directory', '*\n!**/keep.txt\n', ['keep.txt', 'dir/keep.txt', 'dir/other.txt', 'top.txt']),
  C('trailing double star is a prefix', 'a**\n', ['a1', 'ab/c', 'a/x', 'b', 'ba']),
  C('leading double star is a suffix', '**foo\n', ['foo', 'barfoo', 'x/foo', 'x/yfoo', 'foox']),
  C('caret in an expression is an anchor', '^*.md\n', ['a.md', '^b.md', 'sub/c.md']),
  C('caret in plain text is literal', 'a^b\n', ['a^b', 'ab']),
  C('caret after a star', '*^x\n', ['a^x', 'x', '^x']),
  C('character class', '[ab].txt\n', ['a.txt', 'b.txt', 'c.txt', '[ab].txt']),
  C('negated class matches other characters', '[^a].txt\n', ['a.txt', 'b.txt', 'ab.txt']),
  C('class range and question mark', '[a-c]?\n', ['a1', 'c9', 'd1', 'a', 'b12']),
  C('brackets in a name', 'x[1].txt\n', ['x[1].txt', 'x1.txt']),
  C('escaped star is literal', '\\*.txt\n', ['*.txt', 'a.txt']),
  C('escaped bracket', 'x\\[1\\].txt\n', ['x[1].txt', 'x1.txt']),
  C('trailing slash', 'build/\n', ['build/a.o', 'build.txt', 'sub/build/b.o']),
  C('leading slash', '/secret\n', ['secret', 'sub/secret']),
  C('path cleaned', './rel/../x\n', ['x', 'rel/x']),
  C('spaces trimmed', '  spaced.txt  \n', ['spaced.txt', 'other.txt']),
  C('comment only at the start of a line', '# a.txt\n #b.txt\n', ['a.txt', '#b.txt', 'b.txt', '# a.txt']),
  C('last match wins', '*.log\n!important.log\nimportant.log\n', ['important.log', 'other.log', 'x.txt']),
  C('exception after exclusion', '*.log\n!important.log\n', ['important.log', 'other.log']),
  C('double star alone', '**\n', ['a', 'b/c']),
  C('single star in the middle', 'dir/*/file\n', ['dir/a/file', 'dir/a/b/file', 'dir/file', 'dir/a/other']),
  C('question mark is one character', '?.txt\n', ['a.txt', 'ab.txt', '.txt']),
  C('star does not cross a slash', '*/*.go\n', ['top.go', 'a/b.go', 'a/b/c.go']),
  C('double star in the middle', 'a/**/b\n', ['a/b/f', 'a/x/b', 'a/x/y/b', 'a/c', 'x/a/b']),
  C('braces are literal', '{a,b}\n', ['{a,b}', 'a', 'b']),
  C('pipe is literal', 'a|b\n', ['a|b', 'a', 'b']),
  C('dollar is literal', 'foo$\n', ['foo$', 'foo']),
  C('dot is literal', 'a.b\n', ['a.b', 'aXb']),
  C('dot is literal in an expression', '*.b\n', ['a.b', 'aXb']),
  C('unclosed class', 'a[\n', ['a[', 'a']),
  C('class starting with a bracket', '[]a]\n', ['a', ']']),
  C('trailing backslash', 'foo\\\n', ['foo', 'foo\\']),
  C('lone exclamation mark', '!\n', ['a']),
  C('backslash-letter means a digit class to docker', 'x\\d\n', ['x1', 'xd'], true),
  C('star inside a class', '[*]\n', ['*', 'a'], true),
  C('unicode', 'café*\n', ['café.txt', 'cafe.txt', 'CAFÉ.txt']),
  C('parent results: a pattern skipped on the directory', 'a\n!a/c\na\n', ['a/c', 'a/d', 'b']),
  C('CRLF line ends', 'a.txt\r\nb.txt\r\n', ['a.txt', 'b.txt', 'c.txt']),
  C('byte order mark', '\ufeffa.txt\n', ['a.txt', 'b.txt']),
  C('re-included directory', '*\n!dir\n', ['dir/x', 'dir/sub/y', 'other/z', 'top']),
  C('exception for a file in a pruned directory with a deeper path', 'logs\n!logs/keep/*.log\n', ['logs/a.log', 'logs/keep/b.log', 'logs/keep/c.txt']),
];

const BASE = process.env.CORPUS_IMAGE ?? 'buildbot-test/busybox:latest';
const BEGIN = '--corpus-begin--';
const END = '--corpus-end--';

/** Builds each case with the classic builder and returns what it sent. */
function runDocker(c: CorpusCase): CorpusCase['docker'] {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'dockerignore-corpus-'));
  try {
    for (const file of c.files) {
      mkdirSync(path.join(dir, path.dirname(file)), { recursive: true });
      writeFileSync(path.join(dir, file), '');
    }
    writeFileSync(path.join(dir, '.dockerignore'), c.dockerignore);
    writeFileSync(path.join(dir, 'Dockerfile'), `FROM ${BASE}\nCOPY . /ctx\nRUN echo ${BEGIN} && cd /ctx && find . -type f | sort && echo ${END}\n`);
    const res = spawnSync('docker', ['build', '--no-cache', '--rm', '--force-rm', dir], { env: { ...process.env, DOCKER_BUILDKIT: '0' }, encoding: 'utf8' });
    if (res.status !== 0) {
      const line = res.stderr.split('\n').find((l) => l.trim() && !/DEPRECATED|legacy builder|BuildKit is currently disabled|environment-variable/.test(l)) ?? 'failed';
      return { error: line.trim() };
    }
    const out = res.stdout;
    const listed = out.slice(out.lastIndexOf(BEGIN) + BEGIN.length, out.lastIndexOf(END)).split('\n').map((l) => l.trim());
    const included = listed.filter((l) => l.startsWith('./')).map((l) => l.slice(2)).filter((f) => f !== 'Dockerfile' && f !== '.dockerignore').sort();
    const image = /Successfully built ([0-9a-f]+)/.exec(out)?.[1];
    if (image) spawnSync('docker', ['rmi', '-f', image]);
    return { included };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function main(): void {
  const mode = process.argv[2];
  if (mode !== '--write' && mode !== '--verify') {
    console.error('usage: dockerignore-corpus.js --write | --verify');
    process.exit(2);
  }
  const results = CASES.map((c) => {
    const docker = runDocker(c);
    console.log(`${c.name}: ${JSON.stringify(docker)}`);
    return { ...c, docker };
  });
  if (mode === '--write') {
    writeFileSync(CORPUS_FILE, `${JSON.stringify(results, null, 2)}\n`);
    console.log(`wrote ${results.length} cases to ${CORPUS_FILE}`);
    return;
  }
  const stored = JSON.parse(readFileSync(CORPUS_FILE, 'utf8')) as CorpusCase[];
  const differ = results.filter((r) => JSON.stringify(r) !== JSON.stringify(stored.find((s) => s.name === r.name)));
  for (const d of differ) console.error(`differs from the fixture: ${d.name}`);
  console.log(`${results.length - differ.length} passed, ${differ.length} failed`);
  process.exit(differ.length ? 1 : 0);
}

if (process.argv[1] === fileURLToPath(import.meta.url)) main();
