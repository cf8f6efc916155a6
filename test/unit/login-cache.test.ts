import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { forgetLogin, loginCheckedLately, rememberLogin } from '../../src/docker/login-cache.js';

describe('logins checked lately', () => {
  const alice = { registry: 'registry.example.com', username: 'alice', password: 's3cret' };

  it('holds a login for a minute, for exactly the same registry, user and password', () => {
    const t = 1_000_000;
    assert.equal(loginCheckedLately(alice, t), false);
    rememberLogin(alice, t);
    assert.equal(loginCheckedLately(alice, t + 59_999), true);
    assert.equal(loginCheckedLately(alice, t + 60_000), false, 'the window is over');
    assert.equal(loginCheckedLately({ ...alice, password: 's3cret!' }, t + 1), false, 'another password');
    assert.equal(loginCheckedLately({ ...alice, username: 'bob' }, t + 1), false, 'another user');
    assert.equal(loginCheckedLately({ ...alice, registry: 'other.example.com' }, t + 1), false, 'another registry');
    // No field boundary games: "a\0b" + "c" is not "a" + "b\0c".
    rememberLogin({ registry: 'r', username: 'u\0x', password: 'p' }, t);
    assert.equal(loginCheckedLately({ registry: 'r', username: 'u', password: 'x\0p' }, t + 1), false);
  });

  it('forgets a login a push found refused', () => {
    const t = 2_000_000;
    const bob = { ...alice, username: 'bob' };
    rememberLogin(bob, t);
    forgetLogin(bob);
    assert.equal(loginCheckedLately(bob, t + 1), false);
  });
});
