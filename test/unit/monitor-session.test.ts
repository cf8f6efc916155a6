import assert from 'node:assert/strict';
import type { IncomingMessage } from 'node:http';
import { test } from 'node:test';
import { Tokens } from '../../src/fronts/http/auth.js';
import { badgeSvg, badgeWord } from '../../src/fronts/http/monitor/badge.js';
import { formatDuration, html } from '../../src/fronts/http/monitor/html.js';
import { COOKIE, sessionCookie, Sessions } from '../../src/fronts/http/monitor/session.js';

const FULL = 'full-token-abcdef0123456789';
const READ = 'read-token-abcdef0123456789';
const request = (headers: Record<string, string>) => ({ headers }) as unknown as IncomingMessage;
const withCookie = (value: string) => request({ cookie: `other=1; ${COOKIE}=${value}; x=y` });

test('a sign-in cookie names its access, holds no token, and is refused once changed, expired or signed out', () => {
  const sessions = new Sessions(new Tokens([FULL], [READ]));
  assert.equal(sessions.checkToken(FULL)?.access, 'full');
  assert.equal(sessions.checkToken(READ)?.access, 'read');
  assert.equal(sessions.checkToken('wrong-token-0000000000'), undefined);
  assert.notEqual(sessions.checkToken(FULL)?.id, sessions.checkToken(READ)?.id, 'each token has its own id, for per-token limits');

  const { cookie, session } = sessions.create('read');
  assert.ok(!cookie.includes(READ) && !cookie.includes(FULL));
  const found = sessions.fromRequest(withCookie(cookie));
  assert.deepEqual(found && { access: found.session.access, via: found.via, csrf: found.session.csrf }, { access: 'read', via: 'cookie', csrf: session.csrf });

  // A read cookie turned into a full one by hand fails its signature.
  assert.equal(sessions.fromRequest(withCookie(cookie.replace('v1.read.', 'v1.full.'))), undefined);
  // Another server process (another key) does not take it.
  assert.equal(new Sessions(new Tokens([FULL], [READ])).fromRequest(withCookie(cookie)), undefined);
  // Expired.
  const [v, access, , nonce] = cookie.split('.');
  assert.equal(sessions.fromRequest(withCookie(`${v}.${access}.1000.${nonce}.x`)), undefined);

  assert.ok(sessions.csrfMatches(session, session.csrf));
  assert.ok(!sessions.csrfMatches(session, 'x'));
  assert.ok(!sessions.csrfMatches(session, undefined));
  assert.ok(!sessions.csrfMatches(sessions.create('read').session, session.csrf), 'each sign-in has its own CSRF token');

  sessions.signOut(session);
  assert.equal(sessions.fromRequest(withCookie(cookie)), undefined);
});

test('a signed-out cookie stays refused however many sessions come and go, and the record stays bounded', () => {
  const sessions = new Sessions(new Tokens([FULL], [READ]), 1000);
  const full = sessions.create('full', 'token-0');
  assert.equal(sessions.fromRequest(withCookie(full.cookie))?.session.tokenId, 'token-0');
  sessions.signOut(full.session);
  // The old bounded list of sign-outs forgot the oldest past 10,000 rounds and revived the cookie.
  for (let i = 0; i < 25_000; i++) {
    const round = sessions.create('read', 'token-1');
    sessions.signOut(round.session);
  }
  assert.equal(sessions.fromRequest(withCookie(full.cookie)), undefined, 'the signed-out full-access cookie is still refused');
  const kept = Array.from({ length: 1500 }, () => sessions.create('read', 'token-1'));
  assert.equal(sessions.size, 1000, 'at most maxSessions records');
  assert.equal(sessions.fromRequest(withCookie(kept[0].cookie)), undefined, 'past the bound the oldest session ends');
  assert.equal(sessions.fromRequest(withCookie(kept[1499].cookie))?.session.access, 'read');
});

test('a bearer token works on the pages too, and a wrong one is not a session', () => {
  const sessions = new Sessions(new Tokens([FULL], [READ]));
  assert.equal(sessions.fromRequest(request({ authorization: `Bearer ${FULL}` }))?.session.access, 'full');
  assert.equal(sessions.fromRequest(request({ authorization: 'Bearer nope-nope-nope-nope' })), undefined);
  assert.equal(sessions.fromRequest(request({})), undefined);
});

test('the cookie is HttpOnly and SameSite=Strict, Secure behind TLS', () => {
  assert.equal(sessionCookie('v', 60, false), `${COOKIE}=v; Path=/; Max-Age=60; HttpOnly; SameSite=Strict`);
  assert.match(sessionCookie('v', 60, true), /; Secure$/);
});

test('the page template escapes every value it is given', () => {
  const hostile = '<script>alert(1)</script>" onmouseover="x\'';
  const out = html`<p title="${hostile}">${hostile}${[hostile]}</p>`.text;
  assert.ok(!out.includes('<script>') && !out.includes('" onmouseover'));
  assert.equal(out.split('&lt;script&gt;').length, 4);
  assert.equal(html`<p>${html`<b>${'x'}</b>`}</p>`.text, '<p><b>x</b></p>');
  assert.deepEqual([0.25, 3.456, 42, 125, 7322].map(formatDuration), ['250 ms', '3.5 s', '42 s', '2 min 05 s', '2 h 02 min']);
});

test('the badge says the status in words and escapes the service id', () => {
  assert.equal(badgeWord('succeeded'), 'passing');
  assert.equal(badgeWord('failed'), 'failing');
  assert.equal(badgeWord(undefined), 'no builds');
  const svg = badgeSvg('api<&>', 'passing');
  assert.match(svg, /aria-label="api&lt;&amp;&gt;: passing"/);
  assert.match(svg, /#2da44e/);
});
