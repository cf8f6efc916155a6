import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { createDocker } from '../../src/docker/engine.js';
import { parseEngineTarget, type EngineTarget } from '../../src/docker/remote.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'unit-engine-'));
after(() => rmSync(dir, { recursive: true, force: true }));
for (const name of ['ca.pem', 'cert.pem', 'key.pem', 'known_hosts']) writeFileSync(path.join(dir, name), `${name}\n`);
const onlyCa = mkdtempSync(path.join(dir, 'ca-'));
writeFileSync(path.join(onlyCa, 'ca.pem'), 'ca\n');

const target = (env: Record<string, string>) => parseEngineTarget({ HOME: dir, ...env }).target;

describe('DOCKER_HOST as the docker CLI reads it', () => {
  it('reads unix sockets, with the default path when none is given', () => {
    assert.deepEqual(target({}), { kind: 'unix', socketPath: '/var/run/docker.sock' });
    assert.deepEqual(target({ DOCKER_HOST: 'unix://' }), { kind: 'unix', socketPath: '/var/run/docker.sock' });
    assert.deepEqual(target({ DOCKER_HOST: 'unix:///run/x.sock' }), { kind: 'unix', socketPath: '/run/x.sock' });
  });

  it('gives tcp:// the default ports 2375, and 2376 with TLS; a bare host:port is tcp', () => {
    assert.deepEqual(target({ DOCKER_HOST: 'tcp://engine.example.com' }), { kind: 'tcp', host: 'engine.example.com', port: 2375 });
    assert.deepEqual(target({ DOCKER_HOST: 'engine.example.com:4243' }), { kind: 'tcp', host: 'engine.example.com', port: 4243 });
    const tls = target({ DOCKER_HOST: 'tcp://engine.example.com', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: dir });
    assert.equal(tls.kind === 'tcp' && tls.port, 2376);
    assert.ok(tls.kind === 'tcp' && tls.tls?.verify && tls.tls.ca?.toString() === 'ca.pem\n' && tls.tls.cert && tls.tls.key);
    // As in the docker CLI, any value of DOCKER_TLS_VERIFY turns verification on; DOCKER_TLS alone does not verify.
    assert.ok(target({ DOCKER_HOST: 'tcp://h:1', DOCKER_TLS_VERIFY: '0', DOCKER_CERT_PATH: dir }).kind === 'tcp');
    const unverified = target({ DOCKER_HOST: 'tcp://h', DOCKER_TLS: '1', DOCKER_CERT_PATH: onlyCa });
    assert.ok(unverified.kind === 'tcp' && unverified.tls && !unverified.tls.verify && unverified.port === 2376 && !unverified.tls.cert);
    // DOCKER_CERT_PATH defaults to ~/.docker
    assert.throws(() => target({ DOCKER_HOST: 'tcp://h', DOCKER_TLS_VERIFY: '1' }), /cannot read .*\.docker\/ca\.pem/);
  });

  it('reads bracketed IPv6 addresses and refuses what it cannot use, saying what works', () => {
    assert.deepEqual(target({ DOCKER_HOST: 'tcp://[::1]:2376' }), { kind: 'tcp', host: '::1', port: 2376 });
    assert.deepEqual(target({ DOCKER_HOST: 'tcp://[fe80::1]' }), { kind: 'tcp', host: 'fe80::1', port: 2375 });
    assert.throws(() => target({ DOCKER_HOST: 'tcp://::1:2376' }), /IPv6 address goes in brackets|not understood/);
    assert.throws(() => target({ DOCKER_HOST: 'tcp://h:2375/some/path' }), /has a path/);
    assert.throws(() => target({ DOCKER_HOST: 'fd://' }), /not supported|does not name a host/);
    assert.throws(() => target({ DOCKER_HOST: 'ssh://me:pw@h' }), /password in the URL is not supported/);
  });

  it('pins the host key of an ssh:// engine', () => {
    assert.deepEqual(target({ DOCKER_HOST: 'ssh://deploy@engine.example.com:2222', BUILDBOT_ENGINE_KNOWN_HOSTS: path.join(dir, 'known_hosts') }), {
      kind: 'ssh', host: 'engine.example.com', port: 2222, user: 'deploy', knownHosts: path.join(dir, 'known_hosts'), identity: undefined, agentSocket: undefined,
    });
    assert.throws(() => target({ DOCKER_HOST: 'ssh://engine.example.com', HOME: onlyCa }), /host key must be pinned.*ssh-keyscan engine\.example\.com/);
  });

  it("overrides every default docker-modem would take from the server's own environment", () => {
    const saved = { ...process.env };
    Object.assign(process.env, { DOCKER_HOST: 'tcp://elsewhere:2376', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: dir });
    try {
      const modem = (docker: EngineTarget) => createDocker(docker, {}).modem as unknown as Record<string, unknown>;
      const plain = modem({ kind: 'tcp', host: 'h', port: 2375 });
      assert.deepEqual([plain.host, plain.port, plain.protocol, plain.ca, plain.cert, plain.key], ['h', 2375, 'http', undefined, undefined, undefined]);
      const unix = modem({ kind: 'unix', socketPath: '/run/x.sock' });
      assert.deepEqual([unix.host, unix.socketPath], [undefined, '/run/x.sock']);
      const tls = modem({ kind: 'tcp', host: 'h', port: 2376, tls: { verify: true, ca: Buffer.from('ca') } }) as unknown as { protocol: string; agent: { options: Record<string, unknown> } };
      assert.equal(tls.protocol, 'https');
      assert.equal(tls.agent.options.rejectUnauthorized, true);
      assert.equal(process.env.DOCKER_CERT_PATH, dir, 'the environment is as it was');
    } finally {
      for (const key of ['DOCKER_HOST', 'DOCKER_TLS_VERIFY', 'DOCKER_CERT_PATH']) {
        if (saved[key] === undefined) delete process.env[key];
        else process.env[key] = saved[key];
      }
    }
  });
});
