import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { parseBuildCommand, requestOrExit } from '../../src/request/parse.js';
import { secretsInRawArguments, urlCredentialSecrets } from '../../src/request/raw-secrets.js';
import type { BuildRequest } from '../../src/request/types.js';

const base = ['--service_id', 'api', '--revision', 'abc1234', '--image', 'registry.example.com/api', '--tag', '1.4.2'];
const dir = mkdtempSync(path.join(os.tmpdir(), 'unit-raw-'));
after(() => rmSync(dir, { recursive: true, force: true }));
execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(dir, 'k')]);
const keyText = readFileSync(path.join(dir, 'k'), 'utf8');
/** base64 without -w0: wrapped at 76 columns, so an unquoted $(base64 key) arrives as several words. */
const wrapped = execFileSync('base64', [path.join(dir, 'k')], { encoding: 'utf8' }).trim().split('\n');

/** What a front prints for these arguments: exit code, stdout and stderr. */
async function front(argv: string[], env: Record<string, string> = {}): Promise<{ code: number | BuildRequest; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const sink = (append: (s: string) => void) => ({ write: (c: string | Buffer) => (append(c.toString()), true), once: () => undefined });
  const code = await requestOrExit(argv, env, { stdout: sink((s) => (stdout += s)), stderr: sink((s) => (stderr += s)) });
  return { code, stdout, stderr };
}

const keyBodyLines = keyText.split('\n').filter((l) => l.length > 16 && !l.startsWith('-----'));

describe('secrets taken from the raw arguments, before parsing', () => {
  it('a key wrapped at 76 columns is refused as such, and none of its lines is echoed', async () => {
    assert.ok(wrapped.length > 3);
    const res = await front([...base, '--repo', 'git@h:x', '--repo_auth_key', ...wrapped]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: --repo_auth_key is followed by \d+ more words of base64: .*base64 -w0/m);
    for (const line of [...wrapped, ...keyBodyLines]) if (line.length >= 8) assert.ok(!res.stderr.includes(line), `echoed: ${line}`);
  });

  it('a key given as its text, unquoted, is not echoed either', async () => {
    const words = keyText.trim().split(/\s+/);
    const res = await front([...base, '--repo', 'git@h:x', '--repo_auth_key', ...words]);
    assert.equal(res.code, 2);
    for (const line of keyBodyLines) assert.ok(!res.stderr.includes(line), res.stderr);
  });

  it('an https URL with a "/" in its password is not echoed, and says to percent-encode', async () => {
    const res = await front([...base, '--repo', 'https://build:Ab3/xY9+Zq@git.example.com/r']);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: --repo "https:\/\/\*\*\*@git\.example\.com\/r" is not a valid URL \(.*percent-encoded/m);
    assert.ok(!res.stderr.includes('Ab3') && !res.stderr.includes('xY9+Zq'), res.stderr);
    const secrets = secretsInRawArguments(['--repo', 'https://build:Ab3/xY9+Zq@git.example.com/r']);
    assert.ok(secrets.includes('Ab3/xY9+Zq'));
    assert.ok(!secrets.includes('build'), 'a user name beside a password is no secret (it would garble "build.sh")');
    assert.ok(secretsInRawArguments(['--repo=https://ghp_T0kenOnly@github.com/o/r']).includes('ghp_T0kenOnly'), 'a token given as the user name');
  });

  it('a password in an ssh:// URL is a secret, dropped from the URL git gets and from the display URL', async () => {
    const parsed = await parseBuildCommand([...base, '--repo', 'ssh://git:S3cr%2Fet@git.example.com:2222/org/r.git'], {});
    const request = (parsed as { request: BuildRequest }).request;
    assert.equal(request.repo.displayUrl, 'ssh://git@git.example.com:2222/org/r.git');
    assert.equal(request.repo.url, 'ssh://git@git.example.com:2222/org/r.git');
    assert.ok(request.secrets.includes('S3cr%2Fet') && request.secrets.includes('S3cr/et'));
    const res = await front([...base, '--repo', 'ssh://git:S3cr%2Fet@git.example.com:2222/org/r.git', 'stray']);
    assert.ok(!res.stderr.includes('S3cr'), res.stderr);
  });

  it('a login password in every spelling, even spilled into argv unquoted, is redacted', async () => {
    const spilled = await front([...base, '--repo', 'git@h:x', '--docker_login_cmd', 'docker', 'login', '-u', 'u', '-phunter-two', 'reg.example.com']);
    assert.equal(spilled.code, 2);
    assert.ok(!spilled.stderr.includes('hunter-two'), spilled.stderr);
    for (const cmd of ['docker login -u u -p pw-one r.example.com', 'docker login -u u --password=pw-one r.example.com', "docker login -u u -p 'pw-one'"]) {
      assert.ok(secretsInRawArguments(['--docker_login_cmd', cmd]).includes('pw-one'), cmd);
    }
  });

  it('the secrets of the environment of a local run count too, and join the request\'s list', async () => {
    const env = { BUILDBOT_REPO_AUTH_KEY: keyText, BUILDBOT_REGISTRY_USERNAME: 'u', BUILDBOT_REGISTRY_PASSWORD: 'env-pass-1' };
    const raw = secretsInRawArguments([], env);
    assert.ok(raw.includes('env-pass-1'));
    for (const line of keyBodyLines) assert.ok(raw.includes(line));
    const res = await front([...base, '--repo', 'git@h:x'], env);
    const request = res.code as BuildRequest;
    for (const secret of raw) assert.ok(request.secrets.includes(secret));
  });

  it('finds a URL\'s scheme where the regex would, and a 250 KB word of scheme characters costs linear time', () => {
    assert.deepEqual(new Set(urlCredentialSecrets('x --repo=https://tok3n@h/r')), new Set(['tok3n']));
    assert.ok(urlCredentialSecrets('a b/9+c.d://u:pw123456@h/r').includes('pw123456'));
    const later = urlCredentialSecrets('9://u:p@h x1-://u:q@h');
    assert.ok(later.includes('q') && !later.includes('p'), String(later));
    assert.deepEqual(urlCredentialSecrets('ftp://tok3n@h/r'), []);
    // Before: 3 s for 60 KB, 84 s for 250 KB (the regex retried from every position). A bound, not a speed goal.
    for (const word of ['a'.repeat(250_000), `${'a1+.-'.repeat(50_000)}:/`, `${'a:/'.repeat(80_000)}`, `${'a'.repeat(125_000)}://${'b'.repeat(125_000)}`]) {
      const started = process.hrtime.bigint();
      urlCredentialSecrets(word);
      secretsInRawArguments(['--build_secret', word]);
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      assert.ok(ms < 1000, `${ms} ms for a ${word.length}-character word`);
    }
  });
});
