import type { Socket } from 'node:net';
import { addressGroup } from '../address.js';
import type { ServerLog } from '../../log/server-log.js';

export interface AdmissionLimits {
  maxUnauthenticated: number;
  maxUnauthenticatedPerAddress: number;
  authTimeoutMs: number;
}

const keyOf = (ip: string | undefined, port: number | undefined) => `${ip}:${port}`;


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
