import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { builderRepository } from '../../src/pipeline/steps/builder.js';
import { builderDockerfileOf, builderImageOf } from '../../src/pipeline/steps/metadata.js';

describe('the builder step\'s names and build.sh\'s builder headers', () => {
  it('names a service\'s builders by a readable form of its id and a hash of the id itself', () => {
    assert.match(builderRepository('api'), /^buildbot-builder\/api-[0-9a-f]{8}$/);
    assert.match(builderRepository('My..Service__x-'), /^buildbot-builder\/my-service-x-[0-9a-f]{8}$/);
    assert.notEqual(builderRepository('Api'), builderRepository('api'), 'ids differing in case are two services');
    // docker's repository rule: lowercase components, single separators.
    for (const id of ['a', 'A_B', '1.2.3', 'x'.repeat(128), 'a-.-b']) {
      assert.match(builderRepository(id), /^buildbot-builder\/[a-z0-9]+(?:-[a-z0-9]+)*$/, id);
    }
  });

  it('reads #build_inside_dockerfile as written, and keeps it apart from #build_inside_docker_image', () => {
    assert.equal(builderDockerfileOf('#!/bin/sh\n# build_inside_dockerfile = ci/b.Dockerfile \nmake\n'), 'ci/b.Dockerfile');
    assert.equal(builderDockerfileOf('#!/bin/sh\n#build_inside_docker_image=node:20\n'), undefined);
    assert.equal(builderImageOf('#!/bin/sh\n#build_inside_dockerfile=ci/b.Dockerfile\n'), undefined);
    assert.equal(builderDockerfileOf('#build_inside_dockerfile=\n'), '', 'an empty value is read, and then refused by the path rules');
  });
});

describe('#build_cache paths', () => {
  it('takes absolute plain paths and refuses what could reach outside a cache', async () => {
    const { parseCachePaths, cacheVolumeName } = await import('../../src/pipeline/build-cache.js');
    assert.deepEqual(parseCachePaths(' /root/.cache/go-build   /go/pkg/mod/ '), ['/root/.cache/go-build', '/go/pkg/mod']);
    for (const [value, problem] of [
      ['', /names no path/],
      ['relative/path', /not absolute/],
      ['/a/../etc', /not a plain absolute path/],
      ['/a/./b', /not a plain absolute path/],
      ['/', /not a plain absolute path/],
      ['/a$(id)', /not a plain absolute path/],
      ['/project', /inside \/project/],
      ['/proc/self', /inside \/proc/],
      ['/a /a/b', /inside another path/],
      ['/a /a', /inside another path/],
      [`/${'x'.repeat(300)}`, /longer than 255/],
      [Array.from({ length: 9 }, (_, i) => `/c${i}`).join(' '), /at most 8/],
    ] as const) {
      assert.throws(() => parseCachePaths(value), (err: Error & { code?: string }) => err.code === 'EBUILDCACHE' && problem.test(err.message), value);
    }
    assert.notEqual(cacheVolumeName('api', '/cache'), cacheVolumeName('Api', '/cache'));
    assert.notEqual(cacheVolumeName('api', '/cache'), cacheVolumeName('api', '/cache2'));
    assert.match(cacheVolumeName('My.Service', '/cache'), /^buildbot-cache-my-service-[0-9a-f]{8}-[0-9a-f]{12}$/);
  });
});
