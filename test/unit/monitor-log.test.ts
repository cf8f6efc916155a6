import assert from 'node:assert/strict';
import { test } from 'node:test';
import { LogModel, LogShape, MAX_LINE_CHARS, type LogChange, type LogLine, type LogRecord } from '../../src/fronts/http/monitor/log-model.js';

let seq = 0;
const out = (data: string, stream: 'stdout' | 'stderr' = 'stdout'): LogRecord => ({ seq: ++seq, type: 'output', stream, data });
const step = (name: string, phase: 'start' | 'end', ok?: boolean, duration?: number): LogRecord => ({ seq: ++seq, type: 'step', name, phase, ok, duration });

/** Feeds records and returns the final state of every line, by number. */
function lines(model: LogModel, records: LogRecord[]): Map<number, LogLine> {
  const seen = new Map<number, LogLine>();
  for (const record of records) {
    for (const change of model.push(record)) if (change.kind === 'line' || change.kind === 'line-update') seen.set(change.line.n, change.line);
  }
  return seen;
}

/** The visible text of rendered HTML (tags out, entities back). */
const text = (html: string) => html.replace(/<[^>]*>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&quot;/g, '"').replace(/&#x27;/g, "'").replace(/&amp;/g, '&');

test('lines split on newlines across chunks, numbered from 1, open until their newline', () => {
  const model = new LogModel();
  const changes = [...model.push(out('one\ntw')), ...model.push(out('o\nthree'))];
  const final = lines(new LogModel(), [out('one\ntw'), out('o\nthree')]);
  assert.deepEqual([...final.values()].map((l) => [l.n, text(l.html), l.open]), [[1, 'one', false], [2, 'two', false], [3, 'three', true]]);
  // A growing line is updated in place, not added twice.
  assert.deepEqual(changes.filter((c) => c.kind === 'line').map((c) => (c as { line: LogLine }).line.n), [1, 2, 3]);
});

test('HTML in the log is escaped, never markup', () => {
  const final = lines(new LogModel(), [out('<script>alert(1)</script> & "x" \'y\'\n<img src=x onerror=alert(1)>\n')]);
  const [first, second] = [...final.values()];
  assert.ok(!first.html.includes('<script'), first.html);
  assert.ok(first.html.includes('&lt;script&gt;'));
  assert.ok(!second.html.includes('<img'));
  assert.equal(text(first.html), '<script>alert(1)</script> & "x" \'y\'');
});

test('ANSI colours become classes; colour in force carries to the next line of the same stream only', () => {
  const final = lines(new LogModel(), [out('\x1b[31mred\nstill red\x1b[0m\nplain\n'), out('err\n', 'stderr')]);
  const [red, stillRed, plain, err] = [...final.values()];
  assert.match(red.html, /class="ansi-red-fg">red</);
  assert.match(stillRed.html, /class="ansi-red-fg">still red</);
  assert.doesNotMatch(plain.html, /ansi-/);
  assert.equal(text(plain.html), 'plain');
  assert.doesNotMatch(err.html, /ansi-/);
  assert.equal(err.stream, 'stderr');
});

test('bold, 256 colours and true colour are rendered, and no escape byte reaches the page', () => {
  const final = lines(new LogModel(), [out('\x1b[1mbold\x1b[0m \x1b[38;5;208morange\x1b[0m \x1b[38;2;10;20;30mrgb\x1b[0m \x1b[2K\x1b[?25lcursor\n')]);
  const [line] = [...final.values()];
  assert.match(line.html, /font-weight:bold/);
  assert.match(line.html, /orange/);
  assert.match(line.html, /rgb\(10,20,30\)/);
  assert.ok(!line.html.includes('\x1b'));
  assert.equal(text(line.html), 'bold orange rgb cursor');
});

test('carriage returns collapse a progress line to its last version, as a terminal shows it', () => {
  const final = lines(new LogModel(), [out('progress  10%\r'), out('progress  50%\rprogress 100%'), out('\r\n'), out('done\r\n')]);
  assert.deepEqual([...final.values()].map((l) => text(l.html)), ['progress 100%', 'done']);
  // One line, updated in place: no line per version.
  assert.equal(final.size, 2);
});

test('a colour set before a carriage return still colours the rewritten line', () => {
  const final = lines(new LogModel(), [out('\x1b[32m 1/3\r 2/3\r 3/3\n')]);
  const [line] = [...final.values()];
  assert.equal(text(line.html), ' 3/3');
  assert.match(line.html, /ansi-green-fg/);
});

test('stdout and stderr keep separate open lines', () => {
  const final = lines(new LogModel(), [out('building'), out('warning: x\n', 'stderr'), out(' done\n')]);
  assert.deepEqual([...final.values()].map((l) => [l.n, l.stream, text(l.html)]), [[1, 'stdout', 'building done'], [2, 'stderr', 'warning: x']]);
});

test('a sequence split across chunks renders once complete, and never leaks into another line', () => {
  const model = new LogModel();
  const final = lines(model, [out('a\x1b[3'), out('4mblue\x1b[0m\n'), out('next\x1b]8;;http://evil.example\x1b\\'), out('click\x1b]8;;\x1b\\\n')]);
  const [blue, next] = [...final.values()];
  assert.match(blue.html, /ansi-blue-fg">blue/);
  assert.equal(text(blue.html), 'ablue');
  // A hyperlink a build printed shows its text, never a link.
  assert.equal(text(next.html), 'nextclick');
  assert.ok(!next.html.includes('href'), next.html);
});

test('steps become sections; output goes to the running step; failed and running are marked', () => {
  const model = new LogModel();
  const changes: LogChange[] = [];
  for (const r of [out('queued\n'), step('checkout', 'start'), out('cloning\n'), step('checkout', 'end', true, 1.5), step('build.sh', 'start'), out('boom\n', 'stderr'), step('build.sh', 'end', false, 2)]) changes.push(...model.push(r));
  const sections = changes.filter((c) => c.kind === 'section').map((c) => (c as { section: { name: string; index: number } }).section);
  assert.deepEqual(sections.map((s) => [s.index, s.name]), [[0, ''], [1, 'checkout'], [2, 'build.sh']]);
  const ends = changes.filter((c) => c.kind === 'section-end').map((c) => (c as { section: { name: string; state: string; duration?: number } }).section);
  assert.deepEqual(ends.map((s) => [s.name, s.state, s.duration]), [['', 'ok', undefined], ['checkout', 'ok', 1.5], ['build.sh', 'failed', 2]]);
  const lineSections = changes.filter((c) => c.kind === 'line').map((c) => [(c as { line: LogLine }).line.n, (c as { line: LogLine }).line.section]);
  assert.deepEqual(lineSections, [[1, 0], [2, 1], [3, 2]]);
  const exit = model.push({ seq: ++seq, type: 'exit', code: 1, status: 'failed' });
  assert.deepEqual(exit.at(-1), { kind: 'exit', code: 1, status: 'failed' });
});

test('a build cut short marks its running step failed at the exit record', () => {
  const model = new LogModel();
  model.push(step('build.sh', 'start'));
  model.push(out('sleeping'));
  const changes = model.push({ seq: ++seq, type: 'exit', code: 130, status: 'cancelled' });
  assert.deepEqual(changes.map((c) => c.kind), ['line-update', 'section-end', 'exit']);
  assert.equal((changes[1] as { section: { state: string } }).section.state, 'failed');
});

test('a replay overlap is ignored (records at or below the last seq)', () => {
  const model = new LogModel();
  const first = out('a\n');
  assert.equal(model.push(first).length, 2); // the prelude section, the line
  assert.equal(model.push(first).length, 0);
});

test('starting from the tail: numbers go on from firstLine, in the section that was running', () => {
  const model = new LogModel({ firstLine: 501, sections: [{ index: 0, name: 'checkout', state: 'ok' }, { index: 1, name: 'build.sh', state: 'running' }] });
  model.lastSeq = 900;
  const final = lines(model, [{ seq: 901, type: 'output', stream: 'stdout', data: 'x\n' }]);
  assert.deepEqual([...final.values()].map((l) => [l.n, l.section]), [[501, 1]]);
});

test('a huge line is capped and says so; lines after it are whole', () => {
  const final = lines(new LogModel(), [out(`${'x'.repeat(MAX_LINE_CHARS + 5000)}\nshort\n`)]);
  const [huge, short] = [...final.values()];
  assert.match(huge.html, /5000 more characters/);
  assert.ok(huge.html.length < MAX_LINE_CHARS + 500);
  assert.equal(text(short.html), 'short');
});

test('a carriage-return flood stays one bounded line and costs linear time', () => {
  const model = new LogModel();
  const started = process.hrtime.bigint();
  let count = 0;
  for (let i = 0; i < 2000; i++) count += model.push(out(`\x1b[33m${i}%${"\r".repeat(50)}`)).filter((c) => c.kind !== "section").length;
  const final = lines(model, [out('\n')]);
  assert.equal(count, 2000);
  assert.equal(text([...final.values()][0].html), '1999%');
  // Not a time limit on the machine: just that 2000 updates did not degrade into something absurd.
  assert.ok(Number(process.hrtime.bigint() - started) / 1e9 < 20);
});

test('LogShape counts the lines and sections LogModel makes, so a tail keeps the whole log\'s numbers', () => {
  const records: LogRecord[] = [];
  let n = 0;
  const pieces = ['a', '\n', 'b\nc', '', 'd\r\n', '\n\n', 'x\ry', 'err\n'];
  for (let i = 0; i < 300; i++) {
    if (i % 37 === 5) records.push({ seq: ++n, type: 'step', name: `s${i}`, phase: 'start' });
    if (i % 37 === 30) records.push({ seq: ++n, type: 'step', name: `s${i - 25}`, phase: 'end', ok: i % 2 === 0, duration: 1 });
    records.push({ seq: ++n, type: 'output', stream: i % 5 === 0 ? 'stderr' : 'stdout', data: pieces[i % pieces.length] });
  }
  let compared = 0;
  for (const cut of [40, 41, 42, 150, 151, 152, 299]) {
    const shape = new LogShape();
    const model = new LogModel();
    let lines = 0;
    let sections = 0;
    for (const record of records.slice(0, cut)) {
      shape.push(record);
      for (const c of model.push(record)) {
        if (c.kind === 'line') lines = Math.max(lines, c.line.n);
        if (c.kind === 'section') sections++;
      }
    }
    assert.equal(shape.lines, lines, `lines after ${cut} records`);
    assert.equal(shape.sections.length, sections, `sections after ${cut} records`);
    // Going on from the shape gives the numbers the whole model gives.
    const tail = new LogModel({ firstLine: shape.lines + 1, sections: shape.sections });
    tail.lastSeq = records[cut - 1].seq;
    if (!shape.midLine) {
      const whole: number[] = [];
      const fromTail: number[] = [];
      for (const record of records.slice(cut)) {
        for (const c of model.push(record)) if (c.kind === 'line') whole.push(c.line.n);
        for (const c of tail.push(record)) if (c.kind === 'line') fromTail.push(c.line.n);
      }
      assert.deepEqual(fromTail, whole);
      compared++;
    }
  }
  assert.ok(compared >= 2, `${compared} cuts fell between lines`);
});

test('a step\'s header line moves into its own section; the output before the first step ends there', () => {
  const model = new LogModel();
  const changes: LogChange[] = [];
  for (const r of [out('0.0s | # login: checking the login\n'), step('login', 'start'), out('logged in\n'), step('login', 'end', true, 0.1), out('0.1s | # checkout: cloning\n'), step('checkout', 'start')]) changes.push(...model.push(r));
  const moves = changes.filter((c) => c.kind === 'line-move');
  assert.deepEqual(moves, [{ kind: 'line-move', n: 1, from: 0, to: 1 }, { kind: 'line-move', n: 3, from: 1, to: 2 }]);
  const preludeEnd = changes.find((c) => c.kind === 'section-end');
  assert.deepEqual(preludeEnd, { kind: 'section-end', section: { index: 0, name: '', state: 'ok' } });
  // Not a header of this step: stays where it is.
  const other = new LogModel();
  const kept = [...other.push(out('0.0s | # login: x\n')), ...other.push(step('checkout', 'start'))];
  assert.equal(kept.filter((c) => c.kind === 'line-move').length, 0);
});

test('the tail start of a live log hands the event loop back while it reads 140,000 records', async () => {
  const { paced } = await import('../../src/fronts/http/monitor/monitor.js');
  function* records() {
    for (let i = 0; i < 140_000; i++) yield i;
  }
  let ticks = 0;
  const timer = setInterval(() => ticks++, 0);
  let seen = 0;
  let ticksMidway = -1;
  for await (const n of paced(records())) {
    seen++;
    if (n === 70_000) ticksMidway = ticks;
  }
  clearInterval(timer);
  assert.equal(seen, 140_000);
  // Before, a synchronous generator behind for-await ran to its end with no timer in between.
  assert.ok(ticksMidway > 0, 'a timer ran while the records were read');
});
