import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { describe, it } from 'node:test';
import { Admission } from '../../src/fronts/ssh/admission.js';
import { addressGroup } from '../../src/fronts/address.js';

let port = 10000;
/** What Admission uses of a socket: its address, destroy() and 'close'. */
function socket(remoteAddress: string): Socket & { destroyed: boolean } {
  const s = Object.assign(new EventEmitter(), { remoteAddress, remotePort: port++, destroyed: false });
  return Object.assign(s, { destroy: () => { s.destroyed = true; s.emit('close'); return s; } }) as unknown as Socket & { destroyed: boolean };
}

describe('admission of unauthenticated connections', () => {
  it('groups IPv6 addresses by /64 and IPv4-mapped addresses as IPv4', () => {
    assert.equal(addressGroup('2001:db8:1:2:3:4:5:6'), '2001:db8:1:2::/64');
    assert.equal(addressGroup('2001:db8:1:2::ffff'), '2001:db8:1:2::/64');
    assert.equal(addressGroup('2001:0db8:0001:0002:aaaa::1'), '2001:db8:1:2::/64', 'leading zeros do not make another group');
    assert.equal(addressGroup('2001:db8::1'), '2001:db8:0:0::/64');
    assert.equal(addressGroup('2001:db8:0:0:1::1'), '2001:db8:0:0::/64');
    assert.equal(addressGroup('fe80::1%eth0'), 'fe80:0:0:0::/64');
    assert.equal(addressGroup('::1'), '0:0:0:0::/64');
    assert.equal(addressGroup('::ffff:192.0.2.7'), '192.0.2.7');
    assert.equal(addressGroup('::FFFF:192.0.2.7'), '192.0.2.7');
    assert.equal(addressGroup('64:ff9b::192.0.2.7'), '64:ff9b:0:0::/64');
    assert.equal(addressGroup('192.0.2.7'), '192.0.2.7');
  });

  it('one /64 cannot take more than the per-address slots; another /64 and IPv4 still get in', () => {
    const admission = new Admission({ maxUnauthenticated: 100, maxUnauthenticatedPerAddress: 3, authTimeoutMs: 60_000 }, () => {});
    const from64 = ['2001:db8:1:2::1', '2001:db8:1:2::2', '2001:db8:1:2:ffff::3'].map(socket);
    for (const s of from64) assert.equal(admission.admit(s, false), true);
    const fourth = socket('2001:db8:1:2:dead:beef::4');
    assert.equal(admission.admit(fourth, false), false, 'a fourth address of the same /64 is refused');
    assert.ok(fourth.destroyed);
    const next64 = socket('2001:db8:1:3::1');
    assert.equal(admission.admit(next64, false), true, 'the next /64 is another client');
    const v4 = ['192.0.2.7', '::ffff:192.0.2.7', '192.0.2.7'].map(socket);
    for (const s of v4) assert.equal(admission.admit(s, false), true);
    assert.equal(admission.admit(socket('::ffff:192.0.2.7'), false), false, 'IPv4-mapped counts with its IPv4 address');
    from64[0].destroy();
    const later = socket('2001:db8:1:2::99');
    assert.equal(admission.admit(later, false), true, 'a closed connection frees its slot');
    // Closing them clears their login timers.
    for (const s of [...from64, next64, ...v4, later]) s.destroy();
  });
});
