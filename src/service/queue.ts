import { errors } from '../model/errors.js';

interface Waiter {
  start: () => void;
  tell: (place: number) => void;
}

/**
 * At most `max` builds at once; the rest wait in order and are told their place in line (1 = next)
 * as it changes. Builds of one service run one after another (they share its clone cache), and
 * one that waits for its service does so before taking a slot: holding a slot while it waited
 * would keep other services' builds out.
 */
export class BuildQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];
  /** Per service, a promise that settles when the last build admitted for it is done. */
  private readonly services = new Map<string, Promise<void>>();

  constructor(private readonly max: number) {}

  async acquire(serviceId: string, signal: AbortSignal, tell: (place: number) => void, onServiceBusy: () => void): Promise<() => void> {
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
      const releaseSlot = await this.acquireSlot(signal, tell);
      return () => {
        releaseSlot();
        leave();
      };
    } catch (err) {
      leave();
      throw err;
    }
  }

  private async acquireSlot(signal: AbortSignal, tell: (place: number) => void): Promise<() => void> {
    if (this.running < this.max && this.waiting.length === 0) {
      this.running++;
      return this.releaser();
    }
    await new Promise<void>((resolve, reject) => {
      const waiter: Waiter = {
        start: () => {
          signal.removeEventListener('abort', onAbort);
          resolve();
        },
        tell,
      };
      const onAbort = () => {
        this.waiting.splice(this.waiting.indexOf(waiter), 1);
        this.tellPositions();
        reject(errors.cancelled());
      };
      signal.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(waiter);
      tell(this.waiting.length);
    });
    return this.releaser();
  }

  get size(): { running: number; waiting: number } {
    return { running: this.running, waiting: this.waiting.length };
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) {
        next.start();
        this.tellPositions();
      } else {
        this.running--;
      }
    };
  }

  private tellPositions(): void {
    this.waiting.forEach((w, i) => w.tell(i + 1));
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
