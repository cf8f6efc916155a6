/*
 * The worst repository content we can think of, timed against the code that reads it on the
 * server's one thread. No engine needed: `npm run build && node dist/bench/hostile-input.js`.
 * Numbers go to BENCHMARKS.md ("Hostile input"); tests never assert on them.
 */
import { createRequire } from 'node:module';
import { DockerignoreMatcher, STEPS_PER_PATH } from '../src/context/dockerignore.js';
import { createContextFilter } from '../src/context/filter.js';
import { builderImageOf, scanDockerfile } from '../src/pipeline/steps/metadata.js';
import { shellSplit } from '../src/request/shell-split.js';

const MiB = 1 << 20;

function time<T>(fn: () => T): { ms: number; value?: T; error?: string } {
  const start = process.hrtime.bigint();
  try {
    const value = fn();
    return { ms: Number(process.hrtime.bigint() - start) / 1e6, value };
  } catch (err) {
    return { ms: Number(process.hrtime.bigint() - start) / 1e6, error: (err as { code?: string }).code ?? (err as Error).message };
  }
}

const rows: string[][] = [];
function row(input: string, what: string, fn: () => unknown): void {
  // Best of three: the first run pays for compilation.
  const runs = [time(fn), time(fn), time(fn)];
  const best = runs.reduce((a, b) => (b.ms < a.ms ? b : a));
  const outcome = best.error ? `refused (${best.error})` : String(best.value);
  rows.push([input, what, `${best.ms.toFixed(2)} ms`, outcome]);
  console.error(`${input} | ${what} | ${best.ms.toFixed(2)} ms | ${outcome}`);
}

// .dockerignore: regex-shaped and glob-shaped worst cases.
const as = (n: number) => 'a'.repeat(n);
row('`(a+)+b` vs a file of 40 a\'s', 'our matcher', () => DockerignoreMatcher.parse('(a+)+b\n').excludes(as(40)));
row('`(a+)+b` vs a name of 4,000 a\'s', 'our matcher', () => DockerignoreMatcher.parse('(a+)+b\n').excludes(as(4000)));
{
  // The library we replaced, on its own RegExp: exponential, so only up to 24 a's.
  const require = createRequire(import.meta.url);
  try {
    const balena = require('@balena/dockerignore') as () => { add(p: string[]): { ignores(p: string): boolean } };
    for (const n of [20, 22, 24]) row(`\`(a+)+b\` vs ${n} a's`, '@balena/dockerignore (before)', () => balena().add(['(a+)+b']).ignores(as(n)));
  } catch {
    console.error('@balena/dockerignore is not installed (it comes with dockerode); skipping the comparison');
  }
}
row('`*a*a*a*a*a*a*a*a*b` vs 4,000 a\'s', 'our matcher', () => DockerignoreMatcher.parse('*a*a*a*a*a*a*a*a*b\n').excludes(as(4000)));
row('`**/**/**/**/**/**/*a*b` vs 200 × `a/`', 'our matcher', () => DockerignoreMatcher.parse('**/**/**/**/**/**/*a*b\n').excludes('a/'.repeat(200) + 'a'));
row(`2,000 × \`*a*a*a*a*a*a*a*a*b\` vs \`a…a/a…ab\` (1,000 + 1,001; step budget ${STEPS_PER_PATH.toLocaleString('en')} a path)`, 'our matcher', () => DockerignoreMatcher.parse('*a*a*a*a*a*a*a*a*b\n'.repeat(2000)).excludes(`${as(1000)}/${as(1000)}b`));
{
  // The whole-context budget: many paths, each under the per-path budget.
  const patterns = Array.from({ length: 400 }, (_, i) => `**/*x${i}*y*z*`).join('\n');
  const paths = Array.from({ length: 20_000 }, (_, i) => `many/d${i % 50}/x${i % 400}-y-z-${'a'.repeat(30)}-${i}`);
  row(`20,000 paths vs 400 × \`**/*xN*y*z*\` that each path gets past the literal check of`, 'context filter', () => {
    const filter = createContextFilter(patterns);
    return `${paths.filter((p) => filter.includes(p)).length} sent, ${filter.steps.toLocaleString('en')} steps`;
  });
}
row('10,000 patterns `dir-N/*.log`, one path', 'parse + match', () => DockerignoreMatcher.parse(Array.from({ length: 10_000 }, (_, i) => `dir-${i}/*.log`).join('\n')).excludes('dir-9999/x.log'));
row('1 MiB .dockerignore: 10,000 patterns, then comment lines', 'parse', () => DockerignoreMatcher.parse('a\n'.repeat(10_000) + `#${'x'.repeat(79)}\n`.repeat((MiB - 20_000) / 81)).patterns.length);
row('1 MiB .dockerignore: 10,001 patterns', 'parse', () => DockerignoreMatcher.parse('a\n'.repeat(10_001)).patterns.length);
{
  const typical = ['node_modules', '*.log', '!keep.log', 'docs/**', '!docs/public', '**/*.tmp', '.env*', 'coverage', 'dist/**/*.map', '**/__pycache__'].join('\n');
  const paths = Array.from({ length: 100_000 }, (_, i) => `src/module-${i % 500}/sub-${i % 7}/file-${i}.${i % 3 ? 'ts' : 'log'}`).sort();
  row('100,000 paths, 10 typical patterns', 'context filter', () => {
    const filter = createContextFilter(typical);
    return paths.filter((p) => filter.includes(p)).length;
  });
}

// Dockerfile and build.sh: the line scanner (files are capped at 1 MiB before it runs).
// The old expression is quadratic when no FROM follows the blank lines: 20,000 of them are enough to show it.
const blank = (n: number) => `FROM busybox\n${'\n'.repeat(n)}RUN true\n`;
row('Dockerfile: FROM, 1 MiB of blank lines, RUN', 'line scanner', () => scanDockerfile(blank(MiB - 30)).imageFrom);
row('Dockerfile: FROM, 20,000 blank lines, RUN', 'line scanner', () => scanDockerfile(blank(20_000)).imageFrom);
row('Dockerfile: FROM, 20,000 blank lines, RUN', '`/^\\s*FROM\\s+…/gim` (before)', () => [...blank(20_000).matchAll(/^\s*FROM\s+(?:--\S+\s+)*(\S+)/gim)].at(-1)?.[1]);
row('Dockerfile: one 1 MiB line of spaces', 'line scanner', () => scanDockerfile(' '.repeat(MiB)).imageFrom ?? 'none');
row('build.sh: 1 MiB of `#build_inside_docker_image=` lines with two words', 'line scanner', () => builderImageOf('#build_inside_docker_image=a b\n'.repeat(MiB / 32)) ?? 'none');
row('test line: 64 KiB of quoted words', 'shellSplit', () => shellSplit('"a b" '.repeat(64 * 1024 / 6), 'test').length);
row('test line: 64 KiB of backslashes', 'shellSplit', () => shellSplit('\\\\'.repeat(32 * 1024), 'test').length);

console.log('| input | code | time (best of 3) | outcome |');
console.log('| --- | --- | --- | --- |');
for (const r of rows) console.log(`| ${r.join(' | ')} |`);
