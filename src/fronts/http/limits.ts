import type { IncomingMessage, ServerResponse } from 'node:http';
import { addressGroup } from '../address.js';

/** What one HTTP client may hold of the server (README: "What a token can cost the server"). */
export interface HttpLimits {
  /** Open connections; past it a new one is answered 503 with Retry-After and closed. */
  maxConnections: number;
  /** Open connections per client address (IPv6 by /64); past it a new one is answered 429 with Retry-After; 0: no limit. */
  connectionsPerAddress: number;
  /** Open event and log streams per API token (a cookie counts for the token it was signed in with); 0: no limit. */
  streamsPerToken: number;
  /** The same per client address (an IPv6 client by its /64); 0: no limit (behind a proxy all clients share one). */
  streamsPerAddress: number;
  /** A stream whose reader has taken none of the bytes waiting for it for this long is closed (it can resume). */
  idleReaderMs: number;
  /** Sign-ins (right or wrong token) per client address per minute. */
  signInsPerMinute: number;
  /** Bytes of a stream handed to its socket and not yet taken by the kernel: the memory one reader can hold. */
  windowBytes: number;
}

export const HTTP_LIMIT_DEFAULTS: HttpLimits = {
  maxConnections: 1024,
  connectionsPerAddress: 64,
  streamsPerToken: 100,
  streamsPerAddress: 50,
  idleReaderMs: 60_000,
  signInsPerMinute: 10,
  windowBytes: 128 * 1024,
};

/** The seconds a client told to come back later waits (Retry-After). */
export const RETRY_AFTER_SECONDS = 10;

export const clientAddress = (req: IncomingMessage) => addressGroup(req.socket.remoteAddress ?? '?');

/**
 * Counts the open streams per token and per address. A stream is counted from admit() until
 * its response closes, however it ends.
 */
export class StreamGate {
  private readonly perToken = new Map<string, number>();
  private readonly perAddress = new Map<string, number>();
  /** Streams open now, and readers closed for taking nothing (for the metrics). */
  open = 0;
  dropped = 0;

  constructor(private readonly limits: HttpLimits) {}

  /** Why the stream may not open ('token' | 'address'), or undefined once it is counted. */
  admit(req: IncomingMessage, res: ServerResponse, tokenId: string): 'token' | 'address' | undefined {
    const address = clientAddress(req);
    const byToken = this.perToken.get(tokenId) ?? 0;
    const byAddress = this.perAddress.get(address) ?? 0;
    if (this.limits.streamsPerToken && byToken >= this.limits.streamsPerToken) return 'token';
    if (this.limits.streamsPerAddress && byAddress >= this.limits.streamsPerAddress) return 'address';
    this.perToken.set(tokenId, byToken + 1);
    this.perAddress.set(address, byAddress + 1);
    this.open++;
    res.once('close', () => {
      this.open--;
      decrement(this.perToken, tokenId);
      decrement(this.perAddress, address);
    });
    return undefined;
  }

  /** The message of a refusal, naming the limit and its setting. */
  refusal(why: 'token' | 'address'): string {
    return why === 'token'
      ? `this token has ${this.limits.streamsPerToken} event or log streams open, the most the server allows (--http-streams-per-token); close one or try again later`
      : `this address has ${this.limits.streamsPerAddress} event or log streams open, the most the server allows (--http-streams-per-address); close one or try again later`;
  }
}

function decrement(map: Map<string, number>, key: string): void {
  const n = (map.get(key) ?? 1) - 1;
  if (n <= 0) map.delete(key);
  else map.set(key, n);
}

/**
 * At most `max` events per key in each fixed window of `windowMs`. Memory is bounded by the
 * keys seen within one window, and at most `maxKeys` of them: past that every key is refused
 * until the window turns (a flood from that many addresses is refused as a whole).
 */
export class RateLimit {
  private counts = new Map<string, number>();
  private windowStart = Date.now();

  constructor(private readonly max: number, private readonly windowMs: number, private readonly maxKeys = 10_000) {}

  /** 0 when the event may happen (it is counted), else the seconds until it may. */
  take(key: string): number {
    const now = Date.now();
    if (now - this.windowStart >= this.windowMs) {
      this.counts = new Map();
      this.windowStart = now;
    }
    const wait = Math.max(1, Math.ceil((this.windowStart + this.windowMs - now) / 1000));
    const n = this.counts.get(key) ?? 0;
    if (n >= this.max || (n === 0 && this.counts.size >= this.maxKeys)) return wait;
    this.counts.set(key, n + 1);
    return 0;
  }
}
