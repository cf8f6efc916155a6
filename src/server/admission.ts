import { isIPv4, isIPv6, type Socket } from 'node:net';
import type { ServerLog } from '../pipeline/context.js';

export interface AdmissionLimits {
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  authTimeoutMs: number;
}

const keyOf = (ip: string | undefined, port: number | undefined) => `${ip}:${port}`;

/**
 * The unit the per-address limit counts: an IPv4 address (an IPv4-mapped IPv6 address is that
 * IPv4 address), or the /64 of an IPv6 address, because one host is usually handed a whole /64
 * and could otherwise take every slot with addresses of its own.
 */
export function addressGroup(ip: string): string {
  const bare = ip.replace(/%.*$/, '');
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(bare);
  if (mapped && isIPv4(mapped[1])) return mapped[1];
  if (!isIPv6(bare)) return bare;
  return `${expandIPv6(bare).slice(0, 4).join(':')}::/64`;
}

/** The eight 16-bit groups of an IPv6 address, as numbers written in hex without leading zeros. */
function expandIPv6(ip: string): string[] {
  let text = ip;
  // A trailing dotted IPv4 part stands for the last two groups.
  const v4 = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (v4) {
    const [a, b, c, d] = v4.slice(1).map(Number);
    text = `${text.slice(0, v4.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const left = head ? head.split(':') : [];
  const right = tail ? tail.split(':') : [];
  const middle = tail === undefined ? [] : Array(8 - left.length - right.length).fill('0');
  return [...left, ...middle, ...right].map((group) => parseInt(group, 16).toString(16));
}

/**
 * Counts connections from the moment TCP accepts them until they authenticate: a socket
 * that never says a word is counted too (ssh2 only reports a connection after the client's
 * version line). Past the limits, or past the login grace time, the socket is closed. The
 * per-address limit counts IPv6 clients by /64 (see addressGroup).
 */
export class Admission {
  private total = 0;
  private readonly perAddress = new Map<string, number>();
  private readonly pending = new Map<string, () => void>();

  constructor(private readonly limits: AdmissionLimits, private readonly log: ServerLog) {}

  /** Whether to hand the socket to the SSH server; if so it is watched until authenticated() or close. */
  admit(socket: Socket, stopping: boolean): boolean {
    const ip = addressGroup(socket.remoteAddress ?? '?');
    const addr = keyOf(socket.remoteAddress, socket.remotePort);
    const fromHere = this.perAddress.get(ip) ?? 0;
    const refusal = stopping ? 'shutting down'
      : this.total >= this.limits.maxUnauthenticated ? 'too many unauthenticated connections'
      : fromHere >= this.limits.maxUnauthenticatedPerAddress ? 'too many unauthenticated connections from this address'
      : undefined;
    if (refusal) {
      this.log('connection-refused', { addr, reason: refusal });
      socket.destroy();
      return false;
    }
    this.total++;
    this.perAddress.set(ip, fromHere + 1);
    const timer = setTimeout(() => {
      this.log('auth-timeout', { addr });
      socket.destroy();
    }, this.limits.authTimeoutMs);
    let counted = true;
    const settle = () => {
      if (!counted) return;
      counted = false;
      clearTimeout(timer);
      this.pending.delete(addr);
      this.total--;
      const left = (this.perAddress.get(ip) ?? 1) - 1;
      if (left > 0) this.perAddress.set(ip, left);
      else this.perAddress.delete(ip);
    };
    this.pending.set(addr, settle);
    socket.once('close', settle);
    return true;
  }

  authenticated(ip: string, port: number): void {
    this.pending.get(keyOf(ip, port))?.();
  }
}
