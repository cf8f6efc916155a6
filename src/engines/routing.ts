import { hash } from 'node:crypto';
import { errors } from '../model/errors.js';

/**
 * Which engine builds a service (issue 19). Builds of one service go to the same engine while it
 * can take them, so its layer cache and builder images are warm there: weighted rendezvous
 * (highest-random-weight) hashing of the service id orders the engines, the same order on every
 * server without talking, and removing an engine moves only the services it had.
 */

/**
 * A uniform value in (0, 1), never 0 or 1, from (engine, service). SHA-256, not a fast 64-bit
 * hash: it is in node:crypto (nothing to write or vendor, the same value on every server and
 * every Node), its bits are uniform whatever the names look like (ids differing in one character,
 * engine names as short as `a`), and a service owner cannot steer their services onto one engine
 * by choosing ids. Its cost is about 1 to 2 µs per engine per build (bench/routing.ts), nothing
 * next to a build; 53 bits of it fill a double's mantissa.
 */
export function unitHash(engine: string, serviceId: string): number {
  // crypto.hash (Node >= 20.12), one call: about twice as fast as createHash().update().digest().
  // Engine names hold no NUL (src/engines/spec.ts), so the pair reads back one way only.
  const digest = hash('sha256', `${engine}\0${serviceId}`, 'buffer');
  const high = digest.readUInt32BE(0);
  const low = digest.readUInt32BE(4) >>> 11;
  return (high * 2 ** 21 + low + 0.5) / 2 ** 53;
}

/**
 * The weighted HRW score: -weight / ln(h). -ln(h) is exponential of rate 1, so -ln(h) / weight is
 * exponential of rate weight; the engine of the highest score is the one of the smallest such
 * value, and the smallest of independent exponentials is engine i's with probability
 * weight_i / (sum of the weights). Removing an engine changes no other engine's score.
 */
export function score(engine: { name: string; weight: number }, serviceId: string): number {
  return -engine.weight / Math.log(unitHash(engine.name, serviceId));
}

/** The engines in the service's order of preference, first the one it should build on; a new array. */
export function rank<E extends { name: string; weight: number }>(serviceId: string, engines: readonly E[]): E[] {
  // One engine (the default setup): nothing to hash.
  if (engines.length <= 1) return [...engines];
  const scored = engines.map((engine) => ({ engine, score: score(engine, serviceId) }));
  // Ties (in practice never) by name, so that every server agrees whatever order it lists them in.
  scored.sort((a, b) => b.score - a.score || (a.engine.name < b.engine.name ? -1 : a.engine.name > b.engine.name ? 1 : 0));
  return scored.map((s) => s.engine);
}

/**
 * preferred: the first engine by hash over all configured engines. spill: a later one, the first
 * being up but full past the affinity wait. failover: the first by hash was down or draining (this
 * wins over spill when both apply: the preferred engine's absence is why the cache was missed).
 */
export type Placement = 'preferred' | 'spill' | 'failover';

export interface EngineSlotConfig {
  name: string;
  /** > 0; see rank. */
  weight: number;
  /** Builds at once on this engine. */
  slots: number;
}

export interface EngineStatus extends EngineSlotConfig {
  up: boolean;
  draining: boolean;
  running: number;
}

export interface SlotGrant {
  engine: string;
  placement: Placement;
  /** Gives the slot back; once only, later calls do nothing. */
  release(): void;
}

/** With the place in line: the engine the build waits for while in its affinity wait, none once it takes any. */
export interface WaitInfo {
  engine?: string;
}

export interface EngineSlotsOptions {
  /** --max-builds: builds at once over all engines. */
  maxBuilds: number;
  /** --affinity-wait in ms: how long a build waits for its first engine when that one is up but full. */
  affinityWaitMs: number;
  /**
   * When a build arrives and no engine is up and not draining: wait in line for one (default), or
   * fail at once with ENOENGINE. Builds already waiting keep waiting either way.
   */
  whenNoneUp?: 'wait' | 'fail';
}

interface EngineState extends EngineStatus {
  /** Its bit in a waiter's mask of engines it would take (0 past 31 engines: then every waiter competes with every other). */
  bit: number;
}

interface Waiter {
  ranked: EngineState[];
  /** Its affinity wait is over: it takes any candidate with a free slot, its first if that one is free. */
  expired: boolean;
  timer?: NodeJS.Timeout;
  start: (engine: EngineState) => void;
  tell: (place: number, info: WaitInfo) => void;
  told?: { place: number; engine?: string };
}

export const noEngineError = (states: readonly EngineStatus[]) =>
  errors.noEngine(states.map((s) => `${s.name} is ${s.up ? 'draining' : 'down'}`).join(', '));

/**
 * The build slots of several engines (pure logic, no Docker). A build takes a slot on the first of
 * its candidates (the engines up and not draining, in its rank order) when that one has a free
 * slot; when it is up but full, the build waits up to the affinity wait for it, then takes the
 * next candidate with a free slot; with none free it waits in line, first come first served among
 * the builds that could take the same slot, for any candidate to free up. maxBuilds bounds the
 * total. Engines going down or up, draining or resuming, re-evaluate the waiting builds at once.
 *
 * The builds of one service are serialised before they ask (src/service/queue.ts's BuildQueue
 * chains them): `acquire` takes the place of its acquireSlot, with the engine and placement added.
 */
export class EngineSlots {
  private readonly engines: EngineState[];
  private readonly byName = new Map<string, EngineState>();
  private readonly waiting: Waiter[] = [];
  private running = 0;

  constructor(engines: readonly EngineSlotConfig[], private readonly options: EngineSlotsOptions) {
    if (engines.length === 0) throw new Error('EngineSlots needs at least one engine');
    if (!(options.maxBuilds >= 1)) throw new Error('EngineSlots needs maxBuilds >= 1');
    this.engines = engines.map((e, i) => ({ name: e.name, weight: e.weight, slots: e.slots, up: true, draining: false, running: 0, bit: i < 31 ? 1 << i : 0 }));
    for (const e of this.engines) {
      if (this.byName.has(e.name)) throw new Error(`EngineSlots: engine ${e.name} is given twice`);
      if (!(e.weight > 0) || !(e.slots >= 1)) throw new Error(`EngineSlots: engine ${e.name} needs a weight > 0 and slots >= 1`);
      this.byName.set(e.name, e);
    }
  }

  /**
   * A slot for a build of the service. `tell` hears its place in line (1 = next) whenever it
   * changes while it waits, never when a slot is free at once. Rejects with the catalogue's
   * `cancelled` error when the signal aborts first (the build then holds nothing).
   */
  acquire(serviceId: string, signal: AbortSignal, tell: (place: number, info: WaitInfo) => void = () => {}): Promise<SlotGrant> {
    if (signal.aborted) return Promise.reject(errors.cancelled());
    const ranked = rank(serviceId, this.engines);
    const expired = this.options.affinityWaitMs <= 0;
    // After every event no waiting build can take a free slot (dispatch ran), so one that this
    // build can take is no earlier build's: taking it jumps no one.
    const now = this.running < this.options.maxBuilds ? choose(ranked, expired) : undefined;
    if (now) return Promise.resolve(this.grant(now, ranked));
    if (this.options.whenNoneUp === 'fail' && !this.engines.some(isCandidate)) return Promise.reject(noEngineError(this.status()));
    return new Promise<SlotGrant>((resolve, reject) => {
      const waiter: Waiter = {
        ranked,
        expired,
        start: (engine) => {
          signal.removeEventListener('abort', onAbort);
          if (waiter.timer) clearTimeout(waiter.timer);
          resolve(this.grant(engine, ranked));
        },
        tell,
      };
      const onAbort = () => {
        if (waiter.timer) clearTimeout(waiter.timer);
        const at = this.waiting.indexOf(waiter);
        if (at >= 0) this.waiting.splice(at, 1);
        this.tellPlaces();
        reject(errors.cancelled());
      };
      if (!expired) {
        waiter.timer = setTimeout(() => {
          waiter.timer = undefined;
          waiter.expired = true;
          this.dispatch();
        }, this.options.affinityWaitMs);
      }
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
      this.tellPlaces();
    });
  }

  /** The engine answers (true) or does not (false): a down engine takes no new build; its running ones keep their slots until released. */
  setUp(name: string, up: boolean): void {
    const engine = this.engine(name);
    if (engine.up === up) return;
    engine.up = up;
    this.dispatch();
  }

  /** A draining engine finishes its builds and takes no new one. */
  setDraining(name: string, draining: boolean): void {
    const engine = this.engine(name);
    if (engine.draining === draining) return;
    engine.draining = draining;
    this.dispatch();
  }

  status(): EngineStatus[] {
    return this.engines.map(({ name, weight, slots, up, draining, running }) => ({ name, weight, slots, up, draining, running }));
  }

  get size(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  private engine(name: string): EngineState {
    const engine = this.byName.get(name);
    if (!engine) throw new Error(`EngineSlots: no engine named ${name}`);
    return engine;
  }

  private grant(engine: EngineState, ranked: EngineState[]): SlotGrant {
    engine.running++;
    this.running++;
    const first = ranked[0];
    const placement: Placement = engine === first ? 'preferred' : isCandidate(first) ? 'spill' : 'failover';
    let released = false;
    return {
      engine: engine.name,
      placement,
      release: () => {
        if (released) return;
        released = true;
        engine.running--;
        this.running--;
        this.dispatch();
      },
    };
  }

  /** Gives free slots to waiting builds, first come first served; one pass is enough, since a grant only takes slots away. */
  private dispatch(): void {
    for (let i = 0; i < this.waiting.length && this.running < this.options.maxBuilds;) {
      const waiter = this.waiting[i];
      const engine = choose(waiter.ranked, waiter.expired);
      if (!engine) {
        i++;
        continue;
      }
      this.waiting.splice(i, 1);
      waiter.start(engine);
    }
    this.tellPlaces();
  }

  /**
   * Each waiting build's place: 1 + the earlier ones that would take a slot it would take (its
   * first candidate during its affinity wait, any candidate after). With one engine, its place in
   * the one line, as before. Told only when it changed.
   */
  private tellPlaces(): void {
    const masks: number[] = [];
    for (let i = 0; i < this.waiting.length; i++) {
      const waiter = this.waiting[i];
      const candidates = waiter.ranked.filter(isCandidate);
      const affinity = !waiter.expired && candidates.length > 0;
      const takes = affinity ? candidates.slice(0, 1) : candidates;
      let mask = 0;
      for (const e of takes) mask |= e.bit;
      // No candidate, or an engine past the 31st: counted as competing with everyone.
      if (takes.length === 0 || takes.some((e) => e.bit === 0)) mask = -1;
      let place = 1;
      for (let j = 0; j < i; j++) if ((masks[j] & mask) !== 0) place++;
      masks.push(mask);
      const engine = affinity ? candidates[0].name : undefined;
      if (waiter.told?.place === place && waiter.told.engine === engine) continue;
      waiter.told = { place, engine };
      waiter.tell(place, engine ? { engine } : {});
    }
  }
}

function isCandidate(engine: EngineStatus): boolean {
  return engine.up && !engine.draining;
}

/**
 * The engine the build takes now, if any: its first candidate when free; when that one is full,
 * nothing during the affinity wait, after it the next candidate with a free slot.
 */
function choose(ranked: EngineState[], expired: boolean): EngineState | undefined {
  let first = true;
  for (const engine of ranked) {
    if (!isCandidate(engine)) continue;
    if (engine.running < engine.slots) return engine;
    if (first && !expired) return undefined;
    first = false;
  }
  return undefined;
}
