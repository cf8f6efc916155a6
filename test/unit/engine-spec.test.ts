import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { isBuildError } from '../../src/model/errors.js';
import { createEngineDocker, engineDockerodeOptions, engineEntries, parseEngineSpecs, redactEngineUrl, redactEntry } from '../../src/engines/spec.js';

const dir = mkdtempSync(path.join(os.tmpdir(), 'unit-engine-spec-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const knownHosts = path.join(dir, 'known_hosts');
writeFileSync(knownHosts, 'engine.example.com ssh-ed25519 AAAA\n');
const env = { HOME: dir, BUILDBOT_ENGINE_KNOWN_HOSTS: knownHosts };
const parse = (...entries: string[]) => parseEngineSpecs(entries, { maxBuilds: 4, env });

// A self-signed certificate serves as the CA and the client's certificate: enough for a TLS context.
const certs = path.join(dir, 'certs');
mkdirSync(certs);
execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', path.join(certs, 'key.pem'), '-out', path.join(certs, 'cert.pem'), '-subj', '/CN=buildbot-test', '-days', '1'], { stdio: 'ignore' });
copyFileSync(path.join(certs, 'cert.pem'), path.join(certs, 'ca.pem'));

/** The usage error of parsing the entries (exit 2), whose message names --engine. */
function refusal(...entries: string[]): string {
  try {
    parse(...entries);
  } catch (err) {
    assert.ok(isBuildError(err), `a BuildError for ${entries.join(' ')}`);
    assert.equal(err.exitCode, 2);
    assert.match(err.message, /^--engine /);
    return err.message;
  }
  assert.fail(`${entries.join(' ')} was taken`);
}

describe('--engine entries', () => {
  it('without any, gives the one engine `default` of DOCKER_HOST, read as before', () => {
    const [spec, ...more] = parseEngineSpecs([], { maxBuilds: 3, env: { HOME: dir } });
    assert.equal(more.length, 0);
    assert.deepEqual(spec, { name: 'default', url: 'unix:///var/run/docker.sock', slots: 3, weight: 1, target: { kind: 'unix', socketPath: '/var/run/docker.sock' }, label: '/var/run/docker.sock' });
    const [tls] = parseEngineSpecs([], { maxBuilds: 3, env: { HOME: dir, DOCKER_HOST: 'tcp://h', DOCKER_TLS_VERIFY: '1', DOCKER_CERT_PATH: certs } });
    assert.equal(tls.tlsDir, certs);
    assert.ok(tls.target.kind === 'tcp' && tls.target.port === 2376 && tls.target.tls?.verify);
  });

  it('come from the flags, or else from BUILDBOT_ENGINES split on whitespace', () => {
    assert.deepEqual(engineEntries(['a=unix:///a'], { BUILDBOT_ENGINES: 'b=unix:///b' }), ['a=unix:///a']);
    assert.deepEqual(engineEntries([], { BUILDBOT_ENGINES: ' b=unix:///b\n c=tcp://h\t' }), ['b=unix:///b', 'c=tcp://h']);
    assert.deepEqual(engineEntries(undefined, {}), []);
  });

  it('read unix://, tcp:// and ssh:// URLs with slots, weight and tls', () => {
    const [a, b, c, d] = parse('a=unix:///run/a.sock', 'b-2=tcp://10.0.0.2:2375,slots=3,weight=2.5', 'c=ssh://deploy@engine.example.com:2222,weight=1', `d=tcp://[::1],tls=${certs},slots=1`);
    assert.deepEqual([a.name, a.slots, a.weight, a.target], ['a', 4, 1, { kind: 'unix', socketPath: '/run/a.sock' }]);
    assert.deepEqual([b.name, b.slots, b.weight, b.target], ['b-2', 3, 2.5, { kind: 'tcp', host: '10.0.0.2', port: 2375 }]);
    assert.deepEqual(c.target, { kind: 'ssh', host: 'engine.example.com', port: 2222, user: 'deploy', knownHosts, identity: undefined, agentSocket: undefined });
    assert.equal(d.tlsDir, certs);
    assert.ok(d.target.kind === 'tcp' && d.target.port === 2376 && d.target.host === '::1');
    assert.ok(d.target.kind === 'tcp' && d.target.tls?.verify && d.target.tls.ca && d.target.tls.cert && d.target.tls.key);
    assert.match(d.label, /^tcp:\/\/\[::1\]:2376 \(TLS, certificate verified/);
    // An explicit port stays.
    const [e] = parse(`e=tcp://h:9999,tls=${certs}`);
    assert.ok(e.target.kind === 'tcp' && e.target.port === 9999);
  });

  it('refuse a bad entry naming --engine and the entry, never showing a password', () => {
    const cases: Array<[string[], RegExp]> = [
      [['unix:///run/a.sock'], /no NAME=/],
      [['Big=unix:///a'], /"Big" is not 1 to 32/],
      [[`${'a'.repeat(33)}=unix:///a`], /is not 1 to 32/],
      [['a='], /no URL/],
      [['a=ftp://h'], /scheme ftp:\/\/ is not supported/],
      [['a=https://h'], /scheme https:\/\/ is not supported/],
      [['a=h:2375'], /has no scheme/],
      [['a=tcp://h,slots=0'], /slots=0 is not a whole number/],
      [['a=tcp://h,slots=2.5'], /slots=2\.5 is not a whole number/],
      [['a=tcp://h,slots=99999'], /slots=99999 is not a whole number/],
      [['a=tcp://h,weight=0'], /weight=0 is not a positive number/],
      [['a=tcp://h,weight=-1'], /weight=-1 is not a positive number/],
      [['a=tcp://h,weight=lots'], /weight=lots is not a positive number/],
      [['a=tcp://h,slots='], /slots= needs a value/],
      [['a=tcp://h,color=red'], /unknown option "color"/],
      [['a=tcp://h,slots=2,slots=3'], /slots= is given twice/],
      [['a=unix:///a.sock,tls=/x'], /tls=DIR goes with a tcp:\/\/ URL only/],
      [['a=tcp://h:2375/some/path'], /has a path/],
      [['a=tcp://h:99999'], /not understood/],
      [['a=unix:///a', 'a=unix:///b'], /the name a is already taken by --engine a=unix:\/\/\/a/],
    ];
    for (const [entries, problem] of cases) {
      const message = refusal(...entries);
      assert.match(message, problem, entries.join(' '));
      assert.ok(message.includes(`--engine ${entries.at(-1)!.slice(0, 40)}`), `${message} names the entry`);
    }
    // The ssh:// engine's host key must be pinned, as for DOCKER_HOST.
    assert.throws(() => parseEngineSpecs(['a=ssh://engine.example.com'], { maxBuilds: 1, env: { HOME: certs } }), /^BuildError: --engine a=ssh:\/\/engine\.example\.com: the URL ssh:\/\/engine\.example\.com: the engine's SSH host key must be pinned/);
    const secret: Array<[string, RegExp]> = [
      ['a=tcp://user:s3cret@h', /^--engine a=tcp:\/\/\*\*\*@h: a password in the URL is not supported/],
      ['a=ssh://deploy:s3cret@engine.example.com', /^--engine a=ssh:\/\/\*\*\*@engine\.example\.com: a password/],
      ['a=ssh://u:s3,cr=et@h,slots=2', /^--engine a=ssh:\/\/\*\*\*@h,slots=2: a password/],
      ['ssh://u:s3=cret@h', /^--engine ssh:\/\/\*\*\*@h: no NAME=/],
      ['a=tcp://user:s3cret@h:99999', /password/],
      ['a=tcp://s3cret@h', /^--engine a=tcp:\/\/\*\*\*@h: only an ssh:\/\/ URL takes a user/],
      ['a=tcp://user:p@s3cret@h', /^--engine a=tcp:\/\/\*\*\*@h: a password/],
      ['a=ftp://user:s3cret@h', /password/],
      ['a=user:s3cret@h', /password/],
    ];
    for (const [entry, problem] of secret) {
      const message = refusal(entry);
      assert.match(message, problem);
      assert.doesNotMatch(message, /s3|cret|et@/, message);
    }
  });

  it('read tls=DIR, naming a missing or unusable file', () => {
    const partial = path.join(dir, 'partial');
    mkdirSync(partial);
    copyFileSync(path.join(certs, 'ca.pem'), path.join(partial, 'ca.pem'));
    copyFileSync(path.join(certs, 'cert.pem'), path.join(partial, 'cert.pem'));
    assert.match(refusal(`a=tcp://h,tls=${partial}`), new RegExp(`cannot read ${path.join(partial, 'key.pem')} \\(ENOENT\\); tls=DIR must hold ca\\.pem, cert\\.pem and key\\.pem`));
    assert.match(refusal(`a=tcp://h,tls=${path.join(dir, 'nowhere')}`), /nowhere\/ca\.pem \(ENOENT\)/);
    writeFileSync(path.join(partial, 'key.pem'), 'not a key\n');
    assert.match(refusal(`a=tcp://h,tls=${partial}`), /do not make a usable TLS setup/);
    writeFileSync(path.join(partial, 'key.pem'), '');
    assert.match(refusal(`a=tcp://h,tls=${partial}`), /key\.pem is empty/);
    writeFileSync(path.join(partial, 'key.pem'), Buffer.alloc(1024 * 1024 + 1, 'A'));
    assert.match(refusal(`a=tcp://h,tls=${partial}`), /key\.pem is larger than 1024 KiB/);
    rmSync(path.join(partial, 'key.pem'));
    mkdirSync(path.join(partial, 'key.pem'));
    assert.match(refusal(`a=tcp://h,tls=${partial}`), /key\.pem is not a regular file/);
  });

  it('redact credentials from URLs and entries', () => {
    assert.equal(redactEngineUrl('ssh://deploy@h:22'), 'ssh://deploy@h:22');
    assert.equal(redactEngineUrl('ssh://deploy:pw@h'), 'ssh://***@h');
    assert.equal(redactEngineUrl('tcp://user:p@ss@h:1'), 'tcp://***@h:1');
    assert.equal(redactEngineUrl('tcp://token@h'), 'tcp://***@h');
    assert.equal(redactEngineUrl('unix:///run/docker.sock'), 'unix:///run/docker.sock');
    assert.equal(redactEntry('a=tcp://u:p=w@h,slots=2'), 'a=tcp://***@h,slots=2');
  });

  it("map to dockerode's options as the single engine always was", () => {
    const [unix, plain, tls] = parse('a=unix:///run/a.sock', 'b=tcp://h:2375', `c=tcp://h,tls=${certs}`);
    const toolEnv = { PATH: '/usr/bin' };
    assert.equal(engineDockerodeOptions(unix, toolEnv).socketPath, '/run/a.sock');
    const p = engineDockerodeOptions(plain, toolEnv);
    assert.deepEqual([p.host, p.port, p.protocol, p.socketPath], ['h', 2375, 'http', undefined]);
    const t = engineDockerodeOptions(tls, toolEnv) as unknown as { protocol: string; port: number; agent: { options: Record<string, unknown> } };
    assert.deepEqual([t.protocol, t.port, t.agent.options.rejectUnauthorized], ['https', 2376, true]);
    const saved = process.env.DOCKER_HOST;
    process.env.DOCKER_HOST = 'tcp://elsewhere:2376';
    try {
      const modem = createEngineDocker(unix, toolEnv).modem as unknown as Record<string, unknown>;
      assert.deepEqual([modem.socketPath, modem.host], ['/run/a.sock', undefined]);
      assert.equal(process.env.DOCKER_HOST, 'tcp://elsewhere:2376', 'the environment is as it was');
    } finally {
      if (saved === undefined) delete process.env.DOCKER_HOST;
      else process.env.DOCKER_HOST = saved;
    }
  });
});
