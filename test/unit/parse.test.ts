import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parseBuildCommand } from '../../src/request/parse.js';
import type { BuildRequest } from '../../src/request/types.js';

const base = ['--service_id', 'api', '--repo', 'git@github.com:org/api.git', '--revision', 'abc1234', '--image', 'registry.example.com/api', '--tag', '1.4.2'];
const keysDir = mkdtempSync(path.join(os.tmpdir(), 'unit-key-'));
after(() => rmSync(keysDir, { recursive: true, force: true }));
let keyCount = 0;
const keyFile = (type: string, extra: string[] = []) => {
  const file = path.join(keysDir, `k${++keyCount}`);
  execFileSync('ssh-keygen', ['-q', '-t', type, '-N', '', '-f', file, ...extra]);
  return readFileSync(file, 'utf8');
};

async function request(args: string[], env: Record<string, string> = {}): Promise<BuildRequest> {
  const parsed = await parseBuildCommand(args, env);
  assert.equal(parsed.kind, 'build');
  return (parsed as { request: BuildRequest }).request;
}

async function rejects(args: string[], message: RegExp, env: Record<string, string> = {}) {
  await assert.rejects(parseBuildCommand(args, env), (err: Error & { exitCode: number }) => {
    assert.match(err.message, message);
    assert.equal(err.exitCode, 2);
    return true;
  });
}

describe('buildbot.sh arguments', () => {
  it('keeps the original flag names; tags repeat and may be comma lists; revisions stay strings', async () => {
    const r = await request([...base.slice(0, 5), '1234567', ...base.slice(6), '--tag', 'latest,stable', '--tag', '1.4.2']);
    assert.equal(r.serviceId, 'api');
    assert.equal(r.revision, '1234567');
    assert.deepEqual(r.tags, ['1.4.2', 'latest', 'stable']);
    assert.equal(r.registry.server, 'registry.example.com');
    assert.equal(r.repo.vcs, 'git');
  });

  it('names each problem exactly', async () => {
    await rejects(base.filter((_, i) => i !== 2 && i !== 3), /^missing --repo$/);
    await rejects([...base, '--tga', 'x'], /^unknown flag --tga \(did you mean --tag\?\)$/);
    await rejects([...base, 'stray'], /unexpected argument "stray"/);
    await rejects(base.slice(0, 4), /^missing --revision, --image and --tag$/);
    // The second word of a value that lost its quotes (over ssh a value is quoted twice).
    await rejects([...base, '--docker_login_cmd', 'docker', 'login', '-u', 'u', '-p', 'secret-pw', 'registry.example.com'],
      /^unexpected argument "login" after the value of --docker_login_cmd; a value with spaces must be quoted, and over ssh quoted twice: --docker_login_cmd "'… …'"$/);
    await rejects([...base, '--target=build', 'stage'], /^unexpected argument "stage" after the value of --target;/);
    await rejects(['stray', ...base], /^unexpected argument "stray"; every value goes after its flag/);
    await rejects([...base, '--service_id', 'b'], /--service_id was given more than once/);
  });

  it('refuses path tricks in the service id', async () => {
    for (const id of ['../etc', '.hidden', 'a/b', '', 'a b']) {
      await rejects(['--service_id', id, ...base.slice(2)], id ? /--service_id .* is not valid/ : /missing --service_id/);
    }
  });

  it('accepts ssh, scp-like and https repositories and refuses local ones', async () => {
    for (const repo of ['ssh://git@host:2222/org/x.git', 'git@github.com:org/api.git', 'https://host/org/x.git']) {
      assert.equal((await request(['--repo', repo, ...base.slice(0, 2), ...base.slice(4)])).repo.url, repo);
    }
    for (const [repo, msg] of [
      ['file:///etc/passwd', /"file:\/\/…" is refused/],
      ['ext::sh -c touch% /tmp/pwned', /white space|ext::/],
      ['/srv/repo.git', /local paths/],
      ['./repo', /local paths/],
      ['-oProxyCommand=x', /starts with "-"/],
      ['http://host/x.git', /"http:\/\/…" is refused/],
    ] as const) {
      await rejects(['--repo', repo, ...base.slice(0, 2), ...base.slice(4)], msg);
    }
  });

  it('detects Mercurial from ssh://hg@ or --vcs hg', async () => {
    assert.equal((await request([...base.slice(0, 2), '--repo', 'ssh://hg@hg.example.com/repo', ...base.slice(4)])).repo.vcs, 'hg');
    assert.equal((await request([...base, '--vcs', 'hg'])).repo.vcs, 'hg');
    await rejects([...base, '--vcs', 'svn'], /--vcs "svn" is not known/);
  });

  it('strips credentials from an https URL for display and treats them as secrets', async () => {
    const r = await request([...base.slice(0, 2), '--repo', 'https://bot:tok3n-value@host/org/x.git', ...base.slice(4)]);
    assert.equal(r.repo.displayUrl, 'https://host/org/x.git');
    assert.ok(r.secrets.includes('tok3n-value'));
    assert.equal(r.repo.basicAuth, Buffer.from('bot:tok3n-value').toString('base64'));
    assert.ok(r.secrets.includes(r.repo.basicAuth!), 'the header value is redacted too');
    await rejects([...base.slice(0, 2), '--repo', 'https://bot:tok3n@host/x', '--vcs', 'hg', ...base.slice(4)], /not supported for Mercurial/);
  });

  it('validates the image and tags', async () => {
    await rejects([...base.slice(0, 6), '--image', 'registry.example.com/api:1.0', '--tag', '1'], /holds a tag; give the repository only/);
    await rejects([...base.slice(0, 6), '--image', 'Registry.example.com/API', '--tag', '1'], /not a valid image name/);
    await rejects([...base.slice(0, 8), '--tag', '-bad'], /--tag "-bad" is not a valid tag/);
    assert.equal((await request([...base.slice(0, 6), '--image', 'org/api', '--tag', '1'])).registry.server, 'docker.io');
    assert.equal((await request([...base.slice(0, 6), '--image', 'localhost:5000/api', '--tag', '1'])).registry.server, 'localhost:5000');
  });

  it('reads ed25519, RSA and ECDSA keys in OpenSSH and PEM form, as base64 or from the environment', async () => {
    for (const [type, extra] of [['ed25519', []], ['rsa', ['-b', '2048', '-m', 'PEM']], ['ecdsa', []]] as const) {
      const key = keyFile(type, [...extra]);
      const r = await request([...base, '--repo_auth_key', Buffer.from(key).toString('base64')]);
      assert.equal(r.repoAuthKey, key.trim() + '\n');
      assert.ok(r.secrets.includes(Buffer.from(key).toString('base64')));
      assert.equal((await request(base, { BUILDBOT_REPO_AUTH_KEY: key })).repoAuthKey, key.trim() + '\n');
    }
  });

  it('refuses keys it cannot use, saying why', async () => {
    const locked = keyFile('ed25519', ['-N', 'secret-passphrase']);
    await rejects([...base, '--repo_auth_key', Buffer.from(locked).toString('base64')], /passphrase; give a deploy key without one/);
    await rejects([...base, '--repo_auth_key', Buffer.from('ssh-ed25519 AAAA public').toString('base64')], /does not hold a private key/);
    await rejects([...base, '--repo_auth_key', 'not base64!'], /is not base64/);
  });

  it('takes registry credentials from the login command, the login cache or the environment', async () => {
    const fromCmd = await request([...base, '--docker_login_cmd', 'docker login -u u -p p1 registry.example.com']);
    assert.deepEqual(fromCmd.registry.login, { username: 'u', password: 'p1' });
    assert.ok(fromCmd.secrets.includes('p1') && fromCmd.secrets.includes(Buffer.from('u:p1').toString('base64')));
    const fromCache = await request([...base, '--docker_login_cache', Buffer.from('u:p2').toString('base64')]);
    assert.deepEqual(fromCache.registry.login, { username: 'u', password: 'p2' });
    const fromEnv = await request(base, { BUILDBOT_REGISTRY_USERNAME: 'u', BUILDBOT_REGISTRY_PASSWORD: 'p3' });
    assert.deepEqual(fromEnv.registry.login, { username: 'u', password: 'p3' });
    await rejects(base, /BUILDBOT_REGISTRY_USERNAME is not/, { BUILDBOT_REGISTRY_PASSWORD: 'p3' });
    await rejects([...base, '--docker_login_cmd', 'docker login -u u -p p1 other.example.com'], /logs in to other.example.com, but --image is pushed to registry.example.com/);
  });

  it('prints help', async () => {
    const parsed = await parseBuildCommand(['--help'], {});
    assert.equal(parsed.kind, 'help');
    assert.match((parsed as { text: string }).text, /--repo_auth_key/);
  });
});
