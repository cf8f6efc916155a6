import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { shellSplit } from '../../src/request/shell-split.js';
import { parseDockerLoginCmd, parseLoginCache } from '../../src/request/docker-login.js';

describe('shellSplit', () => {
  it('splits like a POSIX shell: quotes and escapes', () => {
    assert.deepEqual(shellSplit(`a "b c" 'd $e' f\\ g "h\\"i"`, 'x'), ['a', 'b c', 'd $e', 'f g', 'h"i']);
  });
  for (const [line, problem] of [
    ['a; rm -rf /', /";" is a shell operator/],
    ['a && b', /"&&" is a shell operator/],
    ['a | b', /"\|" is a shell operator/],
    ['a > f', /">" is a shell operator/],
    ['a $(id)', /"\$\(…\)" or a lone "\$"/],
    ['a `id`', /backticks/],
    ['a $HOME', /a \$ variable \(\$HOME\) would need a shell/],
    ['a "unterminated', /a double quote is not closed/],
    ["a 'unterminated", /a single quote is not closed/],
    ['a\\', /lone backslash/],
    ['a *.txt', /file pattern/],
    ['a # c', /comment/],
  ] as const) {
    it(`refuses ${line}`, () => assert.throws(() => shellSplit(line, 'cmd'), (err: Error & { exitCode: number }) => problem.test(err.message) && err.exitCode === 2));
  }
});

describe('docker login command', () => {
  it('reads -u, -p and the registry', () => {
    assert.deepEqual(parseDockerLoginCmd(`docker login -u bob -p 'pa$$ word' registry.example.com`), { username: 'bob', password: 'pa$$ word', server: 'registry.example.com', notes: [] });
    assert.deepEqual(parseDockerLoginCmd('docker login --username=bob --password x https://registry.example.com/'), { username: 'bob', password: 'x', server: 'registry.example.com', notes: [] });
    assert.equal(parseDockerLoginCmd('docker login -u bob -p x').server, undefined);
  });
  it('refuses anything else, naming it', () => {
    assert.throws(() => parseDockerLoginCmd('docker login -u bob -p x r.io; curl evil'), /";" is a shell operator/);
    assert.throws(() => parseDockerLoginCmd('docker login -u bob --password-stdin r.io'), /--password-stdin cannot be used/);
    assert.throws(() => parseDockerLoginCmd('docker login -u bob -p x --insecure r.io'), /an option that docker login does not have/);
    assert.throws(() => parseDockerLoginCmd('podman login -u bob -p x'), /must start with "docker login"/);
    assert.throws(() => parseDockerLoginCmd('docker login -u bob r.io'), /has no password/);
    assert.throws(() => parseDockerLoginCmd('docker login -u bob -p x r.io other.io'), /more than one word where the registry goes/);
    assert.throws(() => parseDockerLoginCmd('docker login -u bob -p'), /-p needs a value/);
  });
  it('never quotes the command in an error: the password may be the word that failed', () => {
    for (const line of ['docker login -u bob r.io Pa55-secret', 'docker login -u bob -p $Pa55secret r.io', 'docker login -u bob -p Pa55*secret r.io', 'docker login -u bob -Pa55secret r.io']) {
      assert.throws(() => parseDockerLoginCmd(line), (err: Error) => !err.message.includes('Pa55'));
    }
  });
  it('reads a login cache entry (base64 of user:password)', () => {
    assert.deepEqual(parseLoginCache(Buffer.from('bob:s3:cret').toString('base64'), 'r.io').login, { username: 'bob', password: 's3:cret' });
    assert.throws(() => parseLoginCache('bm90LWEtcGFpcg==', 'r.io'), /is neither the "auth" value/);
  });
});
