import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BuildTrace, covered, traced, withTrace } from '../../src/log/trace.js';

describe('build trace', () => {
  it('counts overlapping waits once and clips them to the window', () => {
    assert.equal(covered([], 0, 100), 0);
    assert.equal(covered([{ start: 10, end: 30 }, { start: 20, end: 40 }, { start: 50, end: 60 }], 0, 100), 40);
    assert.equal(covered([{ start: 10, end: 30 }, { start: 15, end: 20 }], 0, 100), 20, 'an interval inside another adds nothing');
    assert.equal(covered([{ start: -50, end: 10 }, { start: 90, end: 200 }], 0, 100), 20);
    assert.equal(covered([{ start: 200, end: 300 }], 0, 100), 0);
  });

  it('attributes a wait to the build it ran in, also from work started in the background, and to no other', async () => {
    const a = new BuildTrace();
    const b = new BuildTrace();
    const nap = (ms: number) => new Promise((r) => setTimeout(r, ms));
    await Promise.all([
      withTrace(a, async () => {
        const done = a.step('checkout');
        let release!: () => void;
        const gate = new Promise<void>((r) => (release = r));
        // Still running when checkout ends: it goes on into the next step.
        const background = traced('git', () => gate.then(() => nap(10)));
        await nap(5);
        done();
        const next = a.step('image');
        release();
        await background;
        await traced('engine', () => nap(20));
        next();
      }),
      withTrace(b, async () => {
        const done = b.step('login');
        await nap(5);
        done();
      }),
    ]);
    await traced('engine', () => nap(5)); // outside any build: counted nowhere
    const rows = Object.fromEntries(a.timings().map((t) => [t.step, t]));
    assert.deepEqual(Object.keys(rows), ['checkout', 'image', 'total']);
    assert.ok(rows.image.git_ms > 0, `the background git run overlaps the next step: ${JSON.stringify(rows.image)}`);
    assert.ok(rows.checkout.git_ms > 0, 'and began in the step that started it');
    assert.ok(rows.image.engine_ms >= 15 && rows.image.engine_ms <= rows.image.wall_ms);
    assert.ok(rows.total.git_ms >= 10 && rows.total.git_ms <= rows.total.wall_ms);
    const other = Object.fromEntries(b.timings().map((t) => [t.step, t]));
    assert.equal(other.total.git_ms + other.total.engine_ms, 0, 'the other build waited on nothing');
  });
});
