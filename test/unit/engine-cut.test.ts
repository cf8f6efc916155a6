import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import type net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { removeContainer } from '../../src/docker/removals.js';
import { createDocker } from '../../src/docker/engine.js';
import { Removals } from '../../src/docker/removals.js';

/**
 * A fake engine on a unix socket that answers POST /containers/{id}/wait as dockerd does:
 * the headers at once, the body when the container exits. Container "cut" never exits: its
 * connection is closed after the headers, as an engine that died (or a relay killed in front of
 * it) closes it. Container "done" exits at once.
 */
describe('an engine connection cut in the middle of an answer', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'unit-enginecut-'));
  const socketPath = path.join(dir, 'docker.sock');
  const sockets = new Set<net.Socket>();
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'application/json' });
    res.flushHeaders();
    if (req.url?.includes('/containers/done/')) res.end('{"StatusCode":0}\n');
    else if (req.url?.includes('/containers/cut/')) setTimeout(() => req.socket.destroy(), 50);
    // "slow": never answers; the caller aborts.
  });
  server.on('connection', (s: net.Socket) => sockets.add(s));
  const docker = () => createDocker({ kind: 'unix', socketPath }, {});
  before(() => new Promise<void>((resolve) => server.listen(socketPath, resolve)));
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('fails the wait with a cut connection (ECONNRESET) instead of leaving it unsettled', async () => {
    const wait = docker().getContainer('cut').wait();
    const late = new Promise((_, reject) => setTimeout(() => reject(new Error('the wait never settled')), 5_000).unref());
    await assert.rejects(Promise.race([wait, late]), (err: NodeJS.ErrnoException) => err.code === 'ECONNRESET');
  });

  it('still answers complete waits, on kept-alive connections, without piling up listeners', async () => {
    const engine = docker();
    for (let i = 0; i < 20; i++) assert.deepEqual(await engine.getContainer('done').wait(), { StatusCode: 0 });
    const agent = (engine.modem as unknown as { agent: http.Agent }).agent;
    const free = Object.values(agent.freeSockets).flat();
    assert.ok(free.length >= 1, 'the connection was kept alive');
    for (const socket of free) assert.ok(socket!.listenerCount('end') <= 2, `listeners on a kept-alive socket: ${socket!.listenerCount('end')}`);
  });

  it('a removal the engine does not answer fails after its timeout, and Removals retries it as an engine away', async () => {
    const frozen = docker().getContainer('slow');
    await assert.rejects(removeContainer(frozen, 100), (err: NodeJS.ErrnoException) => err.code === 'ETIMEDOUT');
    const events: string[] = [];
    // One refusal would be the end; timeouts are not refusals, so the retries go on.
    const removals = new Removals((event) => events.push(event), { firstDelayMs: 10, maxDelayMs: 20, maxRefusals: 1, timeoutMs: 50 });
    await removals.remove(frozen);
    for (const deadline = Date.now() + 5_000; events.filter((e) => e === 'cleanup-retry').length < 4;) {
      assert.ok(Date.now() < deadline, `retries: ${events.join(', ')}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(!events.includes('cleanup-gave-up'), events.join(', '));
    removals.stop('the test is over');
  });

  it('an aborted wait still fails with the abort, not as a cut', async () => {
    const controller = new AbortController();
    const wait = docker().getContainer('slow').wait({ abortSignal: controller.signal } as object);
    setTimeout(() => controller.abort(), 50);
    await assert.rejects(wait, (err: Error) => err.name === 'AbortError');
  });
});
