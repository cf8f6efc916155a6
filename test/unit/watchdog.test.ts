import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/pipeline/config.js';
import { BuildError, isBuildError } from '../../src/model/errors.js';
import { createBuildSignal, timeLimitOf } from '../../src/pipeline/build-signal.js';
import { parseBuildCommand } from '../../src/request/parse.js';
import type { BuildRequest } from '../../src/request/types.js';
import { withoutProgress } from '../../src/vcs/types.js';
import { probeInterval, Prober, StallTimer, stallMessage, Watchdog, type Clock } from '../../src/docker/watchdog.js';

/** Timers that only move when the test says so. */
class FakeClock implements Clock {
  time = 0;
  now(): number {
    return this.time;
  }
  private timers = new Map<number, { at: number; fn: () => void }>();
  private next = 1;
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.timers.set(id, { at: this.time + ms, fn });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers.delete(handle as number);
  }
  /** Moves time forward, firing due timers in order, letting promises settle in between. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms;
    for (;;) {
      await settle();
      const due = [...this.timers.entries()].filter(([, t]) => t.at <= end).sort((a, b) => a[1].at - b[1].at)[0];
      if (!due) break;
      this.timers.delete(due[0]);
      this.time = due[1].at;
      due[1].fn();
    }
    this.time = end;
    await settle();
  }
  get pending(): number {
    return this.timers.size;
  }
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));
const engine = { source: 'the engine', doing: 'pushing api:1.4.2', hint: 'check the engine with docker info' };

describe('stall watchdog', () => {
  it('names who went silent, for how long, doing what, and what to check', () => {
    assert.equal(stallMessage(engine, 600_000), 'the engine sent nothing for 600 s while pushing api:1.4.2; check the engine with docker info');
    assert.equal(stallMessage(engine, 2_500), 'the engine sent nothing for 2.5 s while pushing api:1.4.2; check the engine with docker info');
  });

  it('a stall timer fires once after the stall time without progress, and progress pushes it back', async () => {
    const clock = new FakeClock();
    let fired = 0;
    const timer = new StallTimer(1000, () => fired++, clock);
    await clock.advance(900);
    timer.progress();
    await clock.advance(900);
    assert.equal(fired, 0, 'progress 900 ms in restarted the wait');
    await clock.advance(100);
    assert.equal(fired, 1);
    timer.progress();
    await clock.advance(5000);
    assert.equal(fired, 1, 'fires once');
  });

  it('a stopped timer never fires and leaves no timer behind', async () => {
    const clock = new FakeClock();
    let fired = 0;
    const timer = new StallTimer(1000, () => fired++, clock);
    timer.stop();
    await clock.advance(5000);
    assert.equal(fired, 0);
    assert.equal(clock.pending, 0);
  });

  it('guard: an operation that keeps making progress is never failed, however long it runs', async () => {
    const clock = new FakeClock();
    const failures: BuildError[] = [];
    const dog = new Watchdog(1000, (err) => failures.push(err), async () => undefined, clock);
    let finish!: (v: string) => void;
    const result = dog.guard(engine, (progress) => new Promise<string>((resolve) => {
      finish = resolve;
      const tick = () => {
        progress();
        clock.setTimeout(tick, 500);
      };
      tick();
    }));
    await clock.advance(60_000);
    finish('done');
    assert.equal(await result, 'done');
    assert.deepEqual(failures, []);
  });

  it('guard: silence for the stall time fails the build with ESTALLED and rejects at once, even if the operation never returns', async () => {
    const clock = new FakeClock();
    const failures: BuildError[] = [];
    const dog = new Watchdog(2000, (err) => failures.push(err), async () => undefined, clock);
    const result = dog.guard(engine, () => new Promise<never>(() => {}));
    const outcome = result.then(() => 'resolved', (err: unknown) => err);
    await clock.advance(1999);
    assert.equal(failures.length, 0);
    await clock.advance(1);
    const err = await outcome;
    assert.ok(isBuildError(err));
    assert.equal(err.code, 'ESTALLED');
    assert.equal(err.exitCode, 1);
    assert.equal(err.message, 'the engine sent nothing for 2 s while pushing api:1.4.2; check the engine with docker info');
    assert.equal(failures.length, 1);
    assert.equal(failures[0], err);
  });

  it('guard: the operation failing on its own passes its error through and disarms the timer', async () => {
    const clock = new FakeClock();
    const failures: BuildError[] = [];
    const dog = new Watchdog(1000, (err) => failures.push(err), async () => undefined, clock);
    await assert.rejects(dog.guard(engine, async () => {
      throw new Error('refused');
    }), /refused/);
    await clock.advance(5000);
    assert.deepEqual(failures, []);
    assert.equal(clock.pending, 0);
  });

  it('while user code runs, silence is fine as long as the engine answers its ping', async () => {
    const clock = new FakeClock();
    const failures: BuildError[] = [];
    let pings = 0;
    const dog = new Watchdog(3000, (err) => failures.push(err), async () => {
      pings++;
    }, clock);
    let finish!: (v: number) => void;
    const result = dog.whileUserCode({ ...engine, doing: 'running build.sh' }, () => new Promise<number>((resolve) => (finish = resolve)));
    await clock.advance(60_000);
    finish(0);
    assert.equal(await result, 0);
    assert.deepEqual(failures, []);
    assert.equal(pings, 20, 'a ping every min(stall, 30 s)');
    await clock.advance(60_000);
    assert.equal(pings, 20, 'no ping once the user code has ended');
  });

  it('while user code runs, a ping left unanswered for the stall time fails the build', async () => {
    const clock = new FakeClock();
    const failures: BuildError[] = [];
    let aborted = false;
    const dog = new Watchdog(3000, (err) => failures.push(err), (signal) => new Promise(() => {
      signal.addEventListener('abort', () => (aborted = true));
    }), clock);
    const outcome = dog.whileUserCode({ ...engine, doing: 'running build.sh' }, () => new Promise<never>(() => {})).catch((err: unknown) => err);
    await clock.advance(3000 + 2999);
    assert.equal(failures.length, 0, 'the ping went out after 3 s and has 3 s to answer');
    await clock.advance(1);
    const err = await outcome;
    assert.ok(isBuildError(err));
    assert.equal(err.code, 'ESTALLED');
    assert.equal(err.message, 'the engine answered no ping for 3 s while running build.sh; check the engine with docker info');
    assert.ok(aborted, 'the unanswered ping is cancelled');
  });

  it('a ping that fails fast (engine restarting) is not a stall', async () => {
    const clock = new FakeClock();
    let stalls = 0;
    let probes = 0;
    const prober = new Prober(async () => {
      probes++;
      throw new Error('ECONNREFUSED');
    }, 1000, 3000, () => stalls++, clock);
    await clock.advance(10_000);
    prober.stop();
    assert.equal(stalls, 0);
    assert.equal(probes, 10);
  });

  it('probes every min(stall timeout, 30 s)', () => {
    assert.equal(probeInterval(600_000), 30_000);
    assert.equal(probeInterval(5_000), 5_000);
  });

  it('git and hg progress is taken out of error messages', () => {
    assert.equal(
      withoutProgress('Receiving objects:  10% (1/10)\rReceiving objects: 100% (10/10), done.\nfatal: the remote end hung up\n'),
      'Receiving objects: 100% (10/10), done.\nfatal: the remote end hung up',
    );
    assert.equal(withoutProgress('\rfiles [==>   ] 2/9\r              \rabort: no suitable response\n'), 'abort: no suitable response');
    // ssh's own lines end in \r\n: kept whole.
    assert.equal(withoutProgress('root@h: Permission denied (publickey).\r\nfatal: Could not read from remote repository.\n'),
      'root@h: Permission denied (publickey).\nfatal: Could not read from remote repository.');
  });
});

describe('time limit and timeout settings', () => {
  const request = (timeoutSeconds?: number) => ({ timeoutSeconds }) as BuildRequest;

  it('defaults: 600 s stall timeout, one hour per build; the environment and flags set them', () => {
    const base = loadConfig({});
    assert.equal(base.stallTimeoutMs, 600_000);
    assert.equal(base.buildTimeoutMs, 3_600_000);
    const fromEnv = loadConfig({ BUILDBOT_STALL_TIMEOUT: '5', BUILDBOT_BUILD_TIMEOUT: '60' });
    assert.equal(fromEnv.stallTimeoutMs, 5_000);
    assert.equal(fromEnv.buildTimeoutMs, 60_000);
    const fromFlags = loadConfig({ BUILDBOT_STALL_TIMEOUT: '5' }, { stallTimeout: '7', buildTimeout: '8' });
    assert.equal(fromFlags.stallTimeoutMs, 7_000);
    assert.equal(fromFlags.buildTimeoutMs, 8_000);
  });

  it('refuses timeouts that are not whole seconds, naming the setting', () => {
    assert.throws(() => loadConfig({ BUILDBOT_STALL_TIMEOUT: '0' }), /^BuildError: BUILDBOT_STALL_TIMEOUT "0" is not a number of seconds/);
    assert.throws(() => loadConfig({}, { buildTimeout: '1h' }), /--build-timeout "1h" is not a number of seconds/);
    assert.throws(() => loadConfig({}, { buildTimeout: '99999999' }), /--build-timeout/);
  });

  it('--timeout may lower the limit but not raise it (usage error, exit 2, naming both)', () => {
    const config = loadConfig({ BUILDBOT_BUILD_TIMEOUT: '100' });
    assert.deepEqual(timeLimitOf(request(), config), { seconds: 100, requested: false });
    assert.deepEqual(timeLimitOf(request(40), config), { seconds: 40, requested: true });
    assert.deepEqual(timeLimitOf(request(100), config), { seconds: 100, requested: true });
    assert.throws(() => timeLimitOf(request(101), config), (err: unknown) => {
      assert.ok(isBuildError(err));
      assert.equal(err.exitCode, 2);
      assert.match(err.message, /^--timeout 101 is more than this server's time limit of 100 s/);
      return true;
    });
  });

  it('the build signal says why it aborted: cancelled by the caller, or the time limit (exit 124)', async () => {
    const outer = new AbortController();
    const cancelled = createBuildSignal(outer.signal, { seconds: 60, requested: false }, 60);
    outer.abort();
    assert.ok(cancelled.signal.aborted);
    assert.equal(cancelled.failure().code, 'ECANCELLED');
    cancelled.dispose();

    const limited = createBuildSignal(new AbortController().signal, { seconds: 1, requested: true }, 60);
    // The limit's timer does not hold the process open by itself: this wait does.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    assert.ok(limited.signal.aborted);
    assert.equal(limited.failure().code, 'ETIMEOUT');
    assert.equal(limited.failure().exitCode, 124);
    assert.match(limited.failure().message, /^the build ran past the time limit of 1 s that --timeout set and was cancelled/);
    limited.dispose();
  });

  it('the first reason wins: a stall after the caller went stays a cancel', () => {
    const outer = new AbortController();
    const bs = createBuildSignal(outer.signal, { seconds: 60, requested: false }, 60);
    outer.abort();
    bs.fail(new BuildError('ESTALLED', 'x'));
    assert.equal(bs.failure().code, 'ECANCELLED');
    bs.dispose();
  });

  it('a request takes --timeout; only the local command takes --stall-timeout and --build-timeout', async () => {
    const args = ['--service_id', 's', '--repo', 'ssh://git@h/r.git', '--revision', 'main', '--image', 'r.example/a', '--tag', '1'];
    const parsed = await parseBuildCommand([...args, '--timeout', '30'], {});
    assert.equal(parsed.kind === 'build' && parsed.request.timeoutSeconds, 30);
    await assert.rejects(parseBuildCommand([...args, '--timeout', '0'], {}), /--timeout "0" is not a positive whole number of seconds/);
    await assert.rejects(parseBuildCommand([...args, '--stall-timeout', '5'], {}), /--stall-timeout is a setting of the server/);
    const local = await parseBuildCommand([...args, '--stall-timeout', '5', '--build-timeout', '9'], {}, 'buildbot.sh', true);
    assert.deepEqual(local.kind === 'build' && local.request.local, { stallTimeout: '5', buildTimeout: '9' });
  });
});
