import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { EngineBackground } from '../../src/docker/background.js';

describe('engine work no build waits for (issue 22, row b2b)', () => {
  // The queue's own timer does not keep a process alive (a server or buildbot.sh has other handles): this does, here.
  let keep: NodeJS.Timeout;
  before(() => (keep = setInterval(() => {}, 1000)));
  after(() => clearInterval(keep));
  it('runs one task at a time, in order, and gives each its result', async () => {
    const bg = new EngineBackground(10_000);
    let running = 0;
    let most = 0;
    const order: number[] = [];
    const task = (n: number) => async () => {
      running++;
      most = Math.max(most, running);
      await sleep(20);
      order.push(n);
      running--;
      return n * 10;
    };
    const results = await Promise.all([1, 2, 3].map((n) => bg.run(task(n))));
    assert.deepEqual(results, [10, 20, 30]);
    assert.deepEqual(order, [1, 2, 3]);
    assert.equal(most, 1);
  });

  it('waits while a build is starting, and runs once no build is', async () => {
    const bg = new EngineBackground(10_000);
    const first = bg.buildStarting();
    const second = bg.buildStarting();
    let ran = false;
    const done = bg.run(async () => (ran = true));
    await sleep(50);
    assert.equal(ran, false, 'not while two builds start');
    first();
    first();
    await sleep(50);
    assert.equal(ran, false, 'not while one still starts (ending twice counts once)');
    second();
    await done;
    assert.equal(ran, true);
    assert.equal(await bg.settle(1000), true);
  });

  it('never waits past its bound, however busy; a failed task does not stop the next', async () => {
    const bg = new EngineBackground(100);
    const end = bg.buildStarting();
    const t0 = Date.now();
    assert.equal(await bg.run(async () => {
      throw new Error('engine refused');
    }), undefined);
    assert.equal(await bg.run(async () => 'ran'), 'ran');
    assert.ok(Date.now() - t0 >= 100, 'it waited for the bound');
    assert.ok(Date.now() - t0 < 2000, 'and not much longer');
    end();
  });

  it('flush runs what is queued at once; settle reports what is left in time', async () => {
    const bg = new EngineBackground(60_000);
    const end = bg.buildStarting();
    let ran = false;
    void bg.run(async () => (ran = true));
    assert.equal(await bg.settle(50), false, 'held back by the starting build');
    bg.flush();
    assert.equal(await bg.settle(1000), true);
    assert.equal(ran, true);
    end();
  });
});
