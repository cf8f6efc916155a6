import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { assertNoSecrets, buildArgs, unique } from '../helpers/build.js';
import { keyPath } from '../helpers/env.js';
import { suiteRepos } from '../helpers/fixtures.js';
import { removeAll, staticSite } from '../helpers/repos.js';
import { ssh, startServer, type ServerProcess } from '../helpers/server.js';

/** The command line a CI script would send: the words quoted for the server's shell-style split. */
const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

describe('a caller cannot reach the server\'s own files through --service_id', () => {
  const repoWith = suiteRepos();
  let server: ServerProcess;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('--service_id ssh_host_ed25519_key builds in the cache directory and leaves the host key intact', async () => {
    const hostKeyFile = path.join(server.workDir, 'ssh_host_ed25519_key');
    const hostKey = readFileSync(hostKeyFile);
    const repo = repoWith('hostkey-id', staticSite());
    const image = unique('hostkey-id');
    for (const tag of ['1.0.0', '1.0.1']) {
      // Twice: the second build finds the cache and must not take the host key for a broken one.
      const res = await ssh(server, remote(buildArgs({ service: 'ssh_host_ed25519_key', repo: repo.url, revision: 'main', image, tags: [tag] })));
      assert.equal(res.code, 0, res.stderr);
      assertNoSecrets(res.stdout, res.stderr);
    }
    assert.deepEqual(readFileSync(hostKeyFile), hostKey, 'the host key is unchanged');
    assert.ok(lstatSync(path.join(server.workDir, 'cache', 'ssh_host_ed25519_key', '.git')).isDirectory(), 'the clone is in <work-dir>/cache');

    await server.stop();
    const again = await startServer({ workDir: server.workDir });
    assert.equal(again.fingerprint, server.fingerprint, 'the restarted server has the same host key');
    assert.equal((await ssh(again, ['buildbot.sh', '--help'])).code, 0);
    server = again;
  });

  it('at start, moves clone caches of the old layout into the cache directory, and nothing else', async () => {
    const repo = repoWith('migrate', staticSite());
    const image = unique('migrate');
    const work = server.workDir;
    await server.stop();
    // The old layout: <work-dir>/<service_id>, beside the server's own files.
    execFileSync('git', ['clone', '-q', '--no-checkout', repo.url, path.join(work, image)], {
      env: { ...process.env, GIT_SSH_COMMAND: `ssh -i ${keyPath('deploy_ed25519')} -o IdentitiesOnly=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR` },
      stdio: 'ignore',
    });
    mkdirSync(path.join(work, 'not-a-clone'));
    writeFileSync(path.join(work, 'not-a-clone', 'file'), 'stays');
    mkdirSync(path.join(work, 'file-git'));
    writeFileSync(path.join(work, 'file-git', '.git'), 'gitdir: /etc\n');
    const hostKey = readFileSync(path.join(work, 'ssh_host_ed25519_key'));

    server = await startServer({ workDir: work });
    assert.match(server.log(), new RegExp(`clone-cache-migrated service=${image} `));
    assert.ok(existsSync(path.join(work, 'cache', image, '.git')), 'the old cache moved');
    assert.ok(!existsSync(path.join(work, image)));
    assert.equal(readFileSync(path.join(work, 'not-a-clone', 'file'), 'utf8'), 'stays', 'a directory that is no clone stays');
    assert.ok(existsSync(path.join(work, 'file-git', '.git')), 'nor one whose .git is a file');
    assert.deepEqual(readFileSync(path.join(work, 'ssh_host_ed25519_key')), hostKey);

    const res = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: repo.head(), image })));
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /is in the clone cache already; not fetching/, 'the moved cache is used');
  });
});

describe('a caller\'s usage errors echo no secret', () => {
  let server: ServerProcess;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  it('a deploy key wrapped by base64 at 76 columns, sent unquoted, gets a clear error and is not echoed', async () => {
    const wrapped = execFileSync('base64', [keyPath('deploy_ed25519')], { encoding: 'utf8' });
    const lines = wrapped.trim().split('\n');
    assert.ok(lines.length > 3);
    // As `ssh host buildbot.sh … --repo_auth_key $(base64 key)` sends it: the lines become words.
    const args = buildArgs({ service: 'wrapped', repo: 'git@example.com:o/r.git', revision: 'main', image: 'x', key: null });
    const res = await ssh(server, [`${quote(['buildbot.sh', ...args])} --repo_auth_key ${lines.join(' ')}`]);
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: --repo_auth_key is followed by \d+ more words of base64: .*"\$\(base64 -w0 deploy_key\)"/m);
    for (const line of lines) assert.ok(!res.stderr.includes(line) && !res.stdout.includes(line), `a line of the key was echoed: ${line}`);
    assertNoSecrets(res.stdout, res.stderr, server.log());
  });

  it('an https URL whose password does not parse is shown without its credentials', async () => {
    const args = buildArgs({ service: 'url', repo: 'https://build:Ab3/xY9+Zq@git.example.com/r', revision: 'main', image: 'x', key: null });
    const res = await ssh(server, remote(args));
    assert.equal(res.code, 2);
    assert.match(res.stderr, /^error: --repo "https:\/\/\*\*\*@git\.example\.com\/r" is not a valid URL/m);
    assert.ok(!res.stderr.includes('Ab3') && !server.log().includes('Ab3'), res.stderr);
  });
});
