import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loadConfig } from '../../src/pipeline/config.js';
import { DEFAULT_BUILD_LIMITS, limitsHostConfig, parseMemory, parsePids } from '../../src/docker/limits.js';
import { parseServerArgs } from '../../src/app/config.js';

describe('build container limits', () => {
  it('reads memory sizes as docker --memory does (binary units), 0 for no limit', () => {
    for (const [value, bytes] of [['4g', 4 * 1024 ** 3], ['512m', 512 * 1024 ** 2], ['512MiB', 512 * 1024 ** 2], ['8388608', 8388608], ['0', 0], ['1T', 1024 ** 4]] as const) {
      assert.equal(parseMemory(value, 'x'), bytes, value);
    }
    assert.throws(() => parseMemory('lots', '--build-memory'), /^BuildError: --build-memory "lots" is not a memory size/);
    assert.throws(() => parseMemory('1m', 'BUILDBOT_BUILD_MEMORY'), /below the engine's minimum of 6 MiB/);
    assert.throws(() => parsePids('-1', '--build-pids'), /not a whole number of processes/);
  });
  it('defaults to 4 GiB and 4096 processes, env over defaults, server flags over env', async () => {
    assert.deepEqual(loadConfig({}).buildLimits, DEFAULT_BUILD_LIMITS);
    assert.deepEqual(loadConfig({ BUILDBOT_BUILD_MEMORY: '1g', BUILDBOT_BUILD_PIDS: '0' }).buildLimits, { memoryBytes: 1024 ** 3, pids: 0 });
    const key = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFvTt2vGj6Rr8gJpWcqVYLJwBq0b0gFw6i0lWs1bV3bE test';
    const parsed = await parseServerArgs(['--authorized-key', key, '--build-memory', '256m'], { BUILDBOT_BUILD_MEMORY: '1g', BUILDBOT_BUILD_PIDS: '100' });
    assert.equal(parsed.kind, 'serve');
    if (parsed.kind === 'serve') assert.deepEqual(parsed.config.buildLimits, { memoryBytes: 256 * 1024 ** 2, pids: 100 });
    await assert.rejects(parseServerArgs(['--authorized-key', key, '--build-pids', 'many'], {}), /--build-pids "many" is not a whole number/);
    await assert.rejects(parseServerArgs(['--authorized-key', key], { BUILDBOT_BUILD_MEMORY: 'x' }), /BUILDBOT_BUILD_MEMORY "x" is not a memory size/);
  });
  it('drops NET_RAW always, and sets no limit for 0', () => {
    assert.deepEqual(limitsHostConfig({ memoryBytes: 1024 ** 3, pids: 64 }), { CapDrop: ['NET_RAW'], Memory: 1024 ** 3, MemorySwap: 1024 ** 3, PidsLimit: 64 });
    assert.deepEqual(limitsHostConfig({ memoryBytes: 0, pids: 0 }), { CapDrop: ['NET_RAW'] });
  });
});
