import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isRegistryLike, normalizeLoginServer, registryOfHost, splitImageName, splitImageRef } from '../../src/request/registry.js';

const split = (name: string) => {
  const { registry, path, name: normalized } = splitImageName(name, '--image');
  return [registry, path, normalized];
};

describe('registry names by docker\'s rule', () => {
  it('takes the first part for a registry only when it holds "." or ":" or is localhost', () => {
    assert.deepEqual(split('api'), ['docker.io', 'api', 'api']);
    assert.deepEqual(split('org/api'), ['docker.io', 'org/api', 'org/api']);
    assert.deepEqual(split('org/team/api'), ['docker.io', 'org/team/api', 'org/team/api']);
    assert.deepEqual(split('localhost/api'), ['localhost', 'api', 'localhost/api']);
    assert.deepEqual(split('localhost:5000/api'), ['localhost:5000', 'api', 'localhost:5000/api']);
    assert.deepEqual(split('127.0.0.1:5000/a/b'), ['127.0.0.1:5000', 'a/b', '127.0.0.1:5000/a/b']);
    assert.deepEqual(split('[::1]:5000/api'), ['[::1]:5000', 'api', '[::1]:5000/api']);
    assert.deepEqual(split('123.dkr.ecr.us-east-1.amazonaws.com/api'), ['123.dkr.ecr.us-east-1.amazonaws.com', 'api', '123.dkr.ecr.us-east-1.amazonaws.com/api']);
  });

  it('names Docker Hub docker.io whichever of its names is used, and lowercases hosts', () => {
    assert.deepEqual(split('index.docker.io/org/app'), ['docker.io', 'org/app', 'org/app']);
    assert.deepEqual(split('registry-1.docker.io/org/app'), ['docker.io', 'org/app', 'org/app']);
    assert.deepEqual(split('docker.io/library/app'), ['docker.io', 'library/app', 'library/app']);
    assert.deepEqual(split('Registry.Example.COM/team/api'), ['registry.example.com', 'team/api', 'registry.example.com/team/api']);
    assert.deepEqual(split('LOCALHOST:5000/api'), ['localhost:5000', 'api', 'localhost:5000/api']);
  });

  it('refuses a capitalized first part, which docker takes for a host and a reader for a Hub account', () => {
    assert.throws(() => splitImageName('Regsvc/api', '--image'), /first part "Regsvc" has capital letters, so docker would take it for a registry host.*regsvc\/api/);
    assert.throws(() => splitImageName('registry.example.com/API', '--image'), /not a valid image name/);
    assert.throws(() => splitImageName('bad_host.example.com/api', '--image'), /not a host name docker accepts/);
    assert.throws(() => splitImageName('host:99999/api', '--image'), /port is not between 1 and 65535/);
    assert.throws(() => splitImageName(`r.io/${'a'.repeat(300)}`, '--image'), /longer than 255/);
  });

  it('splits references with tags and digests (builder images)', () => {
    const r = splitImageRef('Registry.example.com:5000/tools/node:20', 'the builder image');
    assert.equal(r.registry, 'registry.example.com:5000');
    assert.equal(r.ref, 'registry.example.com:5000/tools/node:20');
    assert.equal(splitImageRef('node:20', 'x').registry, 'docker.io');
    assert.equal(splitImageRef(`localhost:5000/x@sha256:${'a'.repeat(64)}`, 'x').registry, 'localhost:5000');
    assert.throws(() => splitImageRef('Tools/node:20', 'the builder image'), /the builder image "Tools\/node".*capital letters/);
  });

  it('reads a login server in every form docker login accepts, without quoting it in errors', () => {
    for (const form of ['registry.example.com', 'https://registry.example.com', 'http://registry.example.com/', 'Registry.Example.com/v2/', 'https://registry.example.com/v1/', 'registry.example.com/v2']) {
      assert.equal(normalizeLoginServer(form, '--docker_login_cmd'), 'registry.example.com', form);
    }
    for (const hub of ['https://index.docker.io/v1/', 'docker.io', 'registry-1.docker.io', 'index.docker.io']) {
      assert.equal(normalizeLoginServer(hub, 'x'), 'docker.io');
    }
    assert.equal(normalizeLoginServer('https://123.dkr.ecr.us-east-1.amazonaws.com', 'x'), '123.dkr.ecr.us-east-1.amazonaws.com');
    for (const bad of ['ftp://secret.host', 'r.io/team', 'Pa55+word/x=', 'Pa55_secret']) {
      assert.throws(() => normalizeLoginServer(bad, '--docker_login_cmd'), (err: Error) => !err.message.includes('secret') && !err.message.includes('Pa55') && !err.message.includes('team'));
    }
  });

  it('tells registries from passwords and reads BuildKit\'s host names', () => {
    assert.ok(isRegistryLike('r.io') && isRegistryLike('localhost') && isRegistryLike('https://h:5000/v2/'));
    assert.ok(!isRegistryLike('hunter2') && !isRegistryLike('Pa55+x/y=') && !isRegistryLike('dckr_pat_abc'));
    assert.equal(registryOfHost('registry-1.docker.io'), 'docker.io');
    assert.equal(registryOfHost('127.0.0.1:5000'), '127.0.0.1:5000');
    assert.equal(registryOfHost('not a host'), undefined);
  });
});
