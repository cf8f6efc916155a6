import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { generateEd25519KeyPair } from '../../src/fronts/ssh/host-key.js';
import { parseServerArgs } from '../../src/app/config.js';

const key = generateEd25519KeyPair().public;

async function serve(argv: string[], env: Record<string, string> = {}) {
  const parsed = await parseServerArgs(['--authorized-key', key, ...argv], env);
  assert.equal(parsed.kind, 'serve');
  return parsed.config;
}

describe('server keepalive settings', () => {
  it('default to a probe every 15 s, given up after 3', async () => {
    const config = await serve([]);
    assert.equal(config.keepaliveIntervalMs, 15_000);
    assert.equal(config.keepaliveCountMax, 3);
  });

  it('come from the environment, and a flag wins over its variable', async () => {
    const env = { BUILDBOT_KEEPALIVE_INTERVAL: '5', BUILDBOT_KEEPALIVE_COUNT: '4' };
    assert.deepEqual([(await serve([], env)).keepaliveIntervalMs, (await serve([], env)).keepaliveCountMax], [5000, 4]);
    const flagged = await serve(['--keepalive-interval', '2', '--keepalive-count', '1'], env);
    assert.deepEqual([flagged.keepaliveIntervalMs, flagged.keepaliveCountMax], [2000, 1]);
  });

  it('refuse what is not a positive whole number, naming the flag', async () => {
    await assert.rejects(serve(['--keepalive-interval', '0']), /--keepalive-interval "0" is not a positive whole number/);
    await assert.rejects(serve([], { BUILDBOT_KEEPALIVE_COUNT: '2.5' }), /--keepalive-count "2.5" is not a positive whole number/);
  });
});

describe('build cache bounds', () => {
  it('default to 4096 MB per service and 14 days; the environment sets them and a flag wins', async () => {
    const config = await serve([]);
    assert.deepEqual([config.buildCacheMaxBytes, config.buildCacheDays], [4096 * 1024 * 1024, 14]);
    const env = { BUILDBOT_BUILD_CACHE_MAX_MB: '100', BUILDBOT_BUILD_CACHE_DAYS: '3' };
    assert.deepEqual([(await serve([], env)).buildCacheMaxBytes, (await serve([], env)).buildCacheDays], [100 * 1024 * 1024, 3]);
    const flagged = await serve(['--build-cache-max-mb', '50', '--build-cache-days', '1'], env);
    assert.deepEqual([flagged.buildCacheMaxBytes, flagged.buildCacheDays], [50 * 1024 * 1024, 1]);
  });

  it('refuse what is not a whole number from 1, naming the flag or variable', async () => {
    await assert.rejects(serve(['--build-cache-max-mb', '0']), /--build-cache-max-mb "0" is not a whole number from 1/);
    await assert.rejects(serve([], { BUILDBOT_BUILD_CACHE_DAYS: '1.5' }), /BUILDBOT_BUILD_CACHE_DAYS "1.5" is not a whole number from 1/);
  });
});
