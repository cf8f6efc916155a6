import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { generateEd25519KeyPair } from '../../src/fronts/ssh/host-key.js';
import { keyIdentity, sharingOptions } from '../../src/vcs/ssh-master.js';

const work = mkdtempSync(path.join(os.tmpdir(), 'mux-'));
after(() => rmSync(work, { recursive: true, force: true }));
const keyA = generateEd25519KeyPair().private;
const keyB = generateEd25519KeyPair().private;
const pins = path.join(work, 'known_hosts');
writeFileSync(pins, '[git.example]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyHostKeyHostKeyHostKeyHostKeyHostKey\n');
const controlDir = (opts: string[]) => path.dirname(opts.find((o) => o.startsWith('ControlPath='))!.slice('ControlPath='.length));

describe('sharing the git host connection', () => {
  it('keys the master by the deploy key: the same key shares, another never', async () => {
    const a1 = await sharingOptions(work, keyA, pins, 60);
    const a2 = await sharingOptions(work, keyA, pins, 60);
    const b = await sharingOptions(work, keyB, pins, 60);
    const none = await sharingOptions(work, undefined, pins, 60);
    assert.ok(a1.includes('ControlMaster=auto') && a1.includes('ControlPersist=60'));
    assert.equal(controlDir(a1), controlDir(a2));
    assert.notEqual(controlDir(a1), controlDir(b));
    assert.notEqual(controlDir(a1), controlDir(none));
    assert.match(a1.join(' '), /ControlPath=\S+\/%C/, 'host, port and user through ssh\'s %C');
    assert.equal(statSync(controlDir(a1)).mode & 0o777, 0o700);
    assert.equal(statSync(path.dirname(controlDir(a1))).mode & 0o777, 0o700);
  });

  it('keys it by the pinned host key too, and shares nothing before the first pin, when off, or where a socket path would be too long', async () => {
    const other = path.join(work, 'known_hosts_other');
    writeFileSync(other, '[git.example]:22 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAnotherHostKeyAnotherHostKeyAnotherHostKey\n');
    assert.notEqual(controlDir(await sharingOptions(work, keyA, pins, 60)), controlDir(await sharingOptions(work, keyA, other, 60)));
    assert.deepEqual(await sharingOptions(work, keyA, path.join(work, 'missing'), 60), []);
    assert.deepEqual(await sharingOptions(work, keyA, pins, 0), []);
    assert.deepEqual(await sharingOptions(path.join(work, 'x'.repeat(60)), keyA, pins, 60), []);
  });

  it('tells keys apart by their public half, and keys it cannot read by a keyed hash of their text', () => {
    assert.equal(keyIdentity(keyA), keyIdentity(keyA));
    assert.notEqual(keyIdentity(keyA), keyIdentity(keyB));
    assert.match(keyIdentity(keyA), /^public:ssh-ed25519:/);
    const odd = keyIdentity('not a key at all');
    assert.match(odd, /^private:[0-9a-f]{64}$/);
    assert.ok(!odd.includes('not a key'));
  });
});
