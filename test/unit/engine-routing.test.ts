import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isBuildError } from '../../src/model/errors.js';
import { EngineSlots, rank, unitHash, type EngineSlotConfig, type SlotGrant, type WaitInfo } from '../../src/engines/routing.js';

const ids = (n: number, prefix = 'svc') => Array.from({ length: n }, (_, i) => `${prefix}-${i}`);
const names = (list: Array<{ name: string }>) => list.map((e) => e.name);
const three = [{ name: 'a', weight: 1 }, { name: 'b', weight: 1 }, { name: 'c', weight: 1 }];

describe('weighted rendezvous hashing', () => {
  it('gives h in (0, 1) and the same order on every call, whatever order the engines are listed in', () => {
    for (const id of ids(200)) {
      const h = unitHash('a', id);
      assert.ok(h > 0 && h < 1);
      const order = names(rank(id, three));
      assert.deepEqual(names(rank(id, three)), order);
      assert.deepEqual(names(rank(id, [...three].reverse())), order);
    }
  });

  it('moves only the services of an engine removed (1000 services, 3 engines)', () => {
    let moved = 0;
    for (const id of ids(1000)) {
      const before = names(rank(id, three));
      const after = names(rank(id, three.filter((e) => e.name !== 'b')));
      // The remaining engines keep their relative order: only b's services get a new first.
      assert.deepEqual(after, before.filter((n) => n !== 'b'));
      if (before[0] !== after[0]) {
        assert.equal(before[0], 'b');
        moved++;
      }
    }
    assert.ok(moved > 250 && moved < 420, `${moved} of 1000 moved, about a third`);
  });

  it('moves about 1/n of the services to an engine added, and only to it', () => {
    const four = [...three, { name: 'd', weight: 1 }];
    let moved = 0;
    for (const id of ids(1000)) {
      const before = rank(id, three)[0].name;
      const after = rank(id, four)[0].name;
      if (before !== after) {
        assert.equal(after, 'd');
        moved++;
      }
    }
    assert.ok(moved > 200 && moved < 300, `${moved} of 1000 moved, about a quarter`);
  });

  it('gives each engine a share of the services close to its weight (10,000 services)', () => {
    const weighted = [{ name: 'small', weight: 1 }, { name: 'mid', weight: 2 }, { name: 'big', weight: 3 }, { name: 'half', weight: 0.5 }];
    const total = weighted.reduce((sum, e) => sum + e.weight, 0);
    const count = new Map<string, number>();
    for (const id of ids(10_000)) {
      const first = rank(id, weighted)[0].name;
      count.set(first, (count.get(first) ?? 0) + 1);
    }
    for (const e of weighted) {
      const share = (count.get(e.name) ?? 0) / 10_000;
      assert.ok(Math.abs(share - e.weight / total) < 0.02, `${e.name}: ${share} against ${e.weight / total}`);
    }
  });
});

/** A service id whose first engine by hash is `engine` (and whose second is `then`, if given). */
function serviceFor(engines: EngineSlotConfig[], engine: string, then?: string, skip = 0): string {
  for (let i = 0, found = 0; ; i++) {
    const order = names(rank(`s${i}`, engines));
    if (order[0] === engine && (then === undefined || order[1] === then) && found++ === skip) return `s${i}`;
  }
}

const never = () => new AbortController().signal;
const settled = async <T>(p: Promise<T>): Promise<boolean> => {
  let done = false;
  void p.then(() => (done = true), () => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('EngineSlots', () => {
  const engines: EngineSlotConfig[] = [{ name: 'a', weight: 1, slots: 1 }, { name: 'b', weight: 1, slots: 1 }, { name: 'c', weight: 1, slots: 1 }];
  const onA = serviceFor(engines, 'a', 'b');
  const onA2 = serviceFor(engines, 'a', 'b', 1);
  const onB = serviceFor(engines, 'b');
  const onC = serviceFor(engines, 'c');

  it('gives the preferred engine when it has a free slot, and the slot back on release', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 3, affinityWaitMs: 30_000 });
    const grant = await slots.acquire(onA, never());
    assert.deepEqual([grant.engine, grant.placement], ['a', 'preferred']);
    assert.deepEqual(slots.size, { running: 1, waiting: 0 });
    grant.release();
    grant.release();
    assert.deepEqual(slots.size, { running: 0, waiting: 0 });
    assert.equal(slots.status().find((e) => e.name === 'a')!.running, 0);
  });

  it('waits for the preferred engine within the affinity wait, told its place and the engine', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 3, affinityWaitMs: 30_000 });
    const first = await slots.acquire(onA, never());
    const told: Array<[number, WaitInfo]> = [];
    const second = slots.acquire(onA2, never(), (place, info) => told.push([place, info]));
    assert.equal(await settled(second), false, 'b and c are free, yet it waits for a');
    assert.deepEqual(told, [[1, { engine: 'a' }]]);
    first.release();
    const grant = await second;
    assert.deepEqual([grant.engine, grant.placement], ['a', 'preferred']);
    grant.release();
  });

  it('spills to the next candidate with a free slot after the affinity wait', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 3, affinityWaitMs: 80 });
    const first = await slots.acquire(onA, never());
    const started = Date.now();
    const told: Array<[number, WaitInfo]> = [];
    const grant = await slots.acquire(onA2, never(), (place, info) => told.push([place, info]));
    assert.ok(Date.now() - started >= 70, `spilled after ${Date.now() - started} ms`);
    assert.deepEqual([grant.engine, grant.placement], ['b', 'spill']);
    assert.deepEqual(told, [[1, { engine: 'a' }]]);
    first.release();
    grant.release();
  });

  it('fails over at once when the preferred engine is down or draining, and goes back when it is up', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 3, affinityWaitMs: 30_000 });
    slots.setUp('a', false);
    const down = await slots.acquire(onA, never());
    assert.deepEqual([down.engine, down.placement], ['b', 'failover']);
    down.release();
    slots.setUp('a', true);
    slots.setDraining('a', true);
    const draining = await slots.acquire(onA, never());
    assert.deepEqual([draining.engine, draining.placement], ['b', 'failover']);
    draining.release();
    slots.setDraining('a', false);
    const back = await slots.acquire(onA, never());
    assert.deepEqual([back.engine, back.placement], ['a', 'preferred']);
    back.release();
  });

  it('fails a waiting build over when its preferred engine goes down, and wakes waiters when an engine comes up', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 3, affinityWaitMs: 30_000 });
    const holdA = await slots.acquire(onA, never());
    const waiting = slots.acquire(onA2, never());
    assert.equal(await settled(waiting), false);
    slots.setUp('a', false);
    const moved = await waiting;
    assert.deepEqual([moved.engine, moved.placement], ['b', 'failover']);

    // Everything down: a build waits in line until an engine is up.
    for (const name of ['a', 'b', 'c']) slots.setUp(name, false);
    const told: number[] = [];
    const later = slots.acquire(onC, never(), (place) => told.push(place));
    assert.equal(await settled(later), false);
    assert.deepEqual(told, [1]);
    slots.setUp('c', true);
    const grant = await later;
    assert.deepEqual([grant.engine, grant.placement], ['c', 'preferred']);
    for (const g of [holdA, moved, grant]) g.release();
    assert.deepEqual(slots.size, { running: 0, waiting: 0 });
  });

  it('fails at once with no engine up when told to', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 3, affinityWaitMs: 0, whenNoneUp: 'fail' });
    for (const name of ['a', 'b', 'c']) slots.setUp(name, false);
    slots.setUp('b', true);
    slots.setDraining('b', true);
    await assert.rejects(slots.acquire(onA, never()), (err) => isBuildError(err) && err.code === 'ENOENGINE' && /a is down, b is draining, c is down/.test(err.message));
  });

  it('serves builds first come first served when every engine is full', async () => {
    const two: EngineSlotConfig[] = [{ name: 'a', weight: 1, slots: 1 }, { name: 'b', weight: 1, slots: 1 }];
    const slots = new EngineSlots(two, { maxBuilds: 2, affinityWaitMs: 0 });
    const holdA = await slots.acquire(serviceFor(two, 'a'), never());
    const holdB = await slots.acquire(serviceFor(two, 'b'), never());
    const order: string[] = [];
    const places = new Map<string, number[]>();
    const waiters = ['w0', 'w1', 'w2', 'w3'].map((id, i) => {
      const service = serviceFor(two, i % 2 ? 'a' : 'b', undefined, 2 + i);
      places.set(id, []);
      return slots.acquire(service, never(), (place) => places.get(id)!.push(place)).then((grant) => {
        order.push(id);
        return grant;
      });
    });
    assert.deepEqual([...places.values()].map((p) => p[0]), [1, 2, 3, 4]);
    holdA.release();
    const g0 = await waiters[0];
    assert.equal(g0.engine, 'a', 'the first in line takes whichever engine freed');
    assert.deepEqual(places.get('w3'), [4, 3]);
    holdB.release();
    await waiters[1];
    g0.release();
    await waiters[2];
    assert.deepEqual(order, ['w0', 'w1', 'w2']);
    (await waiters[1]).release();
    (await waiters[2]).release();
    (await waiters[3]).release();
    assert.deepEqual(order, ['w0', 'w1', 'w2', 'w3']);
  });

  it('lets a build waiting in line be cancelled, holding nothing, and moves the others up', async () => {
    const one: EngineSlotConfig[] = [{ name: 'a', weight: 1, slots: 1 }];
    const slots = new EngineSlots(one, { maxBuilds: 1, affinityWaitMs: 30_000 });
    const hold = await slots.acquire('x', never());
    const cancel = new AbortController();
    const cancelled = slots.acquire('y', cancel.signal);
    const told: number[] = [];
    const after = slots.acquire('z', never(), (place) => told.push(place));
    cancel.abort();
    await assert.rejects(cancelled, (err) => isBuildError(err) && err.code === 'ECANCELLED');
    assert.deepEqual(told, [2, 1]);
    assert.deepEqual(slots.size, { running: 1, waiting: 1 });
    hold.release();
    const grant = await after;
    assert.equal(grant.engine, 'a');
    grant.release();
    const aborted = new AbortController();
    aborted.abort();
    await assert.rejects(slots.acquire('x', aborted.signal), (err) => isBuildError(err) && err.code === 'ECANCELLED');
    assert.deepEqual(slots.size, { running: 0, waiting: 0 });
  });

  it('cancels a build during its affinity wait, its timer gone', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 3, affinityWaitMs: 60_000 });
    const hold = await slots.acquire(onA, never());
    const cancel = new AbortController();
    const waiting = slots.acquire(onA2, cancel.signal);
    cancel.abort();
    await assert.rejects(waiting, (err) => isBuildError(err) && err.code === 'ECANCELLED');
    hold.release();
    // The test ends at once: a timer left behind would hold the process for a minute.
  });

  it('holds both the per-engine slots and the total under a random load', async () => {
    const mix: EngineSlotConfig[] = [{ name: 'a', weight: 1, slots: 2 }, { name: 'b', weight: 2, slots: 3 }, { name: 'c', weight: 1, slots: 1 }];
    const maxBuilds = 4;
    const slots = new EngineSlots(mix, { maxBuilds, affinityWaitMs: 5 });
    const running = new Map<string, number>();
    let total = 0;
    let peak = 0;
    const placements = new Map<string, number>();
    let seed = 7;
    const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
    const build = async (i: number) => {
      if (i % 17 === 0) slots.setUp('c', i % 34 !== 0);
      const grant: SlotGrant = await slots.acquire(`svc-${Math.floor(random() * 20)}`, never());
      total++;
      peak = Math.max(peak, total);
      running.set(grant.engine, (running.get(grant.engine) ?? 0) + 1);
      placements.set(grant.placement, (placements.get(grant.placement) ?? 0) + 1);
      for (const e of mix) assert.ok((running.get(e.name) ?? 0) <= e.slots, `${e.name} over its slots`);
      assert.ok(total <= maxBuilds, 'over --max-builds');
      await sleep(random() * 4);
      running.set(grant.engine, running.get(grant.engine)! - 1);
      total--;
      grant.release();
    };
    await Promise.all(Array.from({ length: 200 }, (_, i) => build(i)));
    assert.equal(peak, maxBuilds);
    assert.deepEqual(slots.size, { running: 0, waiting: 0 });
    assert.ok((placements.get('preferred') ?? 0) > 0 && (placements.get('spill') ?? 0) > 0, JSON.stringify([...placements]));
  });

  it('keeps a build blocked by the total on its free preferred engine rather than spilling', async () => {
    const slots = new EngineSlots(engines, { maxBuilds: 1, affinityWaitMs: 0 });
    const hold = await slots.acquire(onB, never());
    const waiting = slots.acquire(onA, never());
    assert.equal(await settled(waiting), false);
    hold.release();
    const grant = await waiting;
    assert.deepEqual([grant.engine, grant.placement], ['a', 'preferred']);
    grant.release();
  });
});
