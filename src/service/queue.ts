import { errors } from '../model/errors.js';
import type { EngineGrant, Engines } from '../engines/types.js';

/**
 * Builds of one service run one after another (they share its clone cache), and one that waits
 * for its service does so before it asks for a slot: holding a slot while it waited would keep
 * other services' builds out. Slots, and the engine each is on, come from the engines
 * (src/engines/: at most --max-builds at once, at most slots=N per engine; the rest wait in
 * order and are told their place in line, 1 = next, as it changes).
 */
export class BuildQueue {
  /** Per service, a promise that settles when the last build admitted for it is done. */
  private readonly services = new Map<string, Promise<void>>();

  constructor(private readonly engines: Pick<Engines, 'acquire'>) {}

  async acquire(serviceId: string, signal: AbortSignal, tell: (place: number) => void, onServiceBusy: () => void): Promise<EngineGrant> {
    const previous = this.services.get(serviceId);
    let finish!: () => void;
    const mine = new Promise<void>((resolve) => (finish = resolve));
    const last = (previous ?? Promise.resolve()).then(() => mine);
    this.services.set(serviceId, last);
    const leave = () => {
      finish();
      if (this.services.get(serviceId) === last) this.services.delete(serviceId);
    };
    try {
      if (previous) {
        onServiceBusy();
        await untilDoneOrAborted(previous, signal);
      }
      const grant = await this.engines.acquire(serviceId, signal, (place) => tell(place));
      return {
        ...grant,
        release: () => {
          grant.release();
          leave();
        },
      };
    } catch (err) {
      leave();
      throw err;
    }
  }
}

function untilDoneOrAborted(done: Promise<void>, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.reject(errors.cancelled());
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(errors.cancelled());
    signal.addEventListener('abort', onAbort, { once: true });
    void done.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}
