import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { RateLimit } from '../../src/fronts/http/limits.js';
import { checkRequestSize, REQUEST_LIMITS } from '../../src/request/limits.js';
import { parseBuildCommand } from '../../src/request/parse.js';
import { RecordLog } from '../../src/model/record-log.js';
import type { BuildRecord } from '../../src/model/build.js';

const base = ['--service_id', 'api', '--repo', 'git@example.com:o/r.git', '--revision', 'main', '--image', 'registry.example.com/api'];

test('a request past a list limit is refused in linear time, naming the flag and quoting no value', async () => {
  const tags = (n: number, prefix = 't') => Array.from({ length: n }, (_, i) => `${prefix}${i}`);
  const ok = await parseBuildCommand([...base, ...tags(REQUEST_LIMITS.tags).flatMap((t) => ['--tag', t])], {});
  assert.equal(ok.kind === 'build' && ok.request.tags.length, REQUEST_LIMITS.tags);
  for (const argv of [
    [...base, '--tag', tags(REQUEST_LIMITS.tags + 1, 'secret-').join(',')],
    [...base, ...tags(60).flatMap((t) => ['--tag', `${t},x${t}`])],
    [...base, ...tags(REQUEST_LIMITS.tags + 1).map((t) => `--tag=${t}`)],
  ]) {
    await assert.rejects(parseBuildCommand(argv, {}), (err: Error & { code?: string; field?: string }) => {
      assert.equal(err.code, 'ETOOLARGE');
      assert.equal(err.field, 'tag');
      assert.match(err.message, /^--tag names more than 100 tags, the most one build takes; split the work into several builds$/);
      return true;
    });
  }
  assert.throws(() => checkRequestSize([...base, ...tags(101).flatMap((t) => ['--build_arg', `${t}=1`])]), /--build_arg was given more than 100 times/);
  assert.throws(() => checkRequestSize([...base, '--cache_from', tags(101).join(',')]), /--cache_from names more than 100 images/);
  // 27,000 tags (the hunt's request) cost a few milliseconds, not yargs' seconds.
  const huge = [...base, ...tags(27_000).flatMap((t) => ['--tag', t])];
  const started = performance.now();
  assert.throws(() => checkRequestSize(huge), /--tag names more than 100 tags/);
  assert.throws(() => checkRequestSize([...base, '--tag', 'x', ...tags(27_000)]), /the request has 27010 words, at most 1000/);
  const oneComma = [...base, '--tag', tags(60_000).join(',')];
  assert.throws(() => checkRequestSize(oneComma), /--tag names more than 100 tags/);
  assert.ok(performance.now() - started < 1000, 'linear, not quadratic');
});

test('a rate limit counts per key within its window, and bounds the keys it remembers', () => {
  const limit = new RateLimit(3, 60_000, 5);
  assert.deepEqual([1, 2, 3].map(() => limit.take('a')), [0, 0, 0]);
  const wait = limit.take('a');
  assert.ok(wait > 0 && wait <= 60, String(wait));
  assert.equal(limit.take('b'), 0, 'another key has its own count');
  for (const key of ['c', 'd', 'e']) assert.equal(limit.take(key), 0);
  assert.ok(limit.take('f') > 0, 'past maxKeys a new key waits for the window');
});

test('the kept log replays from any seq, across the cut, by binary search', () => {
  const log = new RecordLog(100, 0);
  const out = (seq: number): BuildRecord => ({ seq, time: '', type: 'output', stream: 'stdout', data: 'x'.repeat(10) });
  for (let seq = 1; seq <= 40; seq++) log.append(out(seq));
  const seqs = (after: number) => [...log.replay(after)].map((r) => `${r.type === 'cut' ? 'cut' : ''}${r.seq}`);
  assert.deepEqual(seqs(0), ['1', '2', '3', '4', '5', 'cut35', '36', '37', '38', '39', '40']);
  assert.deepEqual(seqs(3), ['4', '5', 'cut35', '36', '37', '38', '39', '40']);
  assert.deepEqual(seqs(20), ['cut35', '36', '37', '38', '39', '40']);
  assert.deepEqual(seqs(37), ['38', '39', '40']);
  assert.deepEqual(seqs(40), []);
});

test('the stored log is read a chunk at a time: every record, long lines too, and a cut last line skipped', async () => {
  const { History } = await import('../../src/store/files/history.js');
  const dir = mkdtempSync(path.join(os.tmpdir(), 'buildbot-history-'));
  try {
    const service = { observe() {}, get: () => undefined, release() {} } as unknown as ConstructorParameters<typeof History>[1];
    const history = new History(dir, service, 10, () => {});
    const id = 'abcdefghi0123abcd';
    const records = Array.from({ length: 3000 }, (_, i) => JSON.stringify({ seq: i + 1, time: '', type: 'output', stream: 'stdout', data: i === 1500 ? 'y'.repeat(200_000) : `line ${i} ü` }));
    writeFileSync(path.join(dir, '.history', `${id}.ndjson`), `${records.join('\n')}\n{"seq":3001,"ty`);
    const seqs: number[] = [];
    for await (const record of history.replay(id, 0)) seqs.push(record.seq);
    assert.deepEqual(seqs, Array.from({ length: 3000 }, (_, i) => i + 1));
    const after: number[] = [];
    for await (const record of history.replay(id, 2990)) after.push(record.seq);
    assert.deepEqual(after, [2991, 2992, 2993, 2994, 2995, 2996, 2997, 2998, 2999, 3000]);
    // As stored, for NDJSON and SSE readers: the same lines byte for byte, the cut one left out.
    const lines: string[] = [];
    for await (const { seq, type, line } of history.replayLines(id, 0)) {
      assert.equal(type, 'output');
      assert.equal(seq, lines.length + 1);
      lines.push(line.toString('utf8'));
    }
    assert.deepEqual(lines, records);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
