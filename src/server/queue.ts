import { errors } from '../errors.js';

interface Waiter {
  start: () => void;
  tell: (place: number) => void;
}

/** At most `max` builds at once; the rest wait in order and are told their place in line (1 = next) as it changes. */
export class BuildQueue {
  private running = 0;
  private readonly waiting: Waiter[] = [];

  constructor(private readonly max: number) {}

  async acquire(signal: AbortSignal, tell: (place: number) => void): Promise<() => void> {
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
