import assert from 'node:assert/strict';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { quote } from 'shell-quote';
import { assertNoSecrets, buildArgs, unique } from '../helpers/build.js';
import type { RunResult } from '../helpers/cli.js';
import { buildContainers } from '../helpers/docker.js';
import { suiteRepos } from '../helpers/fixtures.js';
import { registryTags } from '../helpers/registry.js';
import { removeAll, staticSite, type Files } from '../helpers/repos.js';
import { ssh, startServer, startSsh, type ServerProcess } from '../helpers/server.js';
import { testEnv } from '../helpers/env.js';

/*
 * A repository's author controls every byte of the checkout and everything build.sh does.
 * Each test here is one attack, made by the test as a real repository on the git host and
 * built through the real server: the host's files stay as they were, the build ends with a
 * clear error, and the server answers another client while the hostile build runs.
 */

const remote = (args: string[]) => [quote(['buildbot.sh', ...args])];

/** The smallest repository that builds without build.sh, plus `files`. */
const plainRepo = (files: Files = {}): Files => ({ Dockerfile: `FROM ${testEnv().busyboxImage}\nCOPY . /src\n`, ...files });

/** A repository whose build.sh runs `script` in /project and whose in-image test runs `check` (sh -c) over /src. */
const scriptRepo = (script: string, check: string, files: Files = {}): Files => ({
  'build.sh': { mode: 0o755, content: `#!/bin/sh\n#build_inside_docker_image=${testEnv().busyboxImage}\nset -e\n${script}\n` },
  Dockerfile: `FROM ${testEnv().busyboxImage}\n#test_in_container_entrypoint=sh -c '${check}'\nCOPY . /src\n`,
  ...files,
});

/** The server's peak resident memory so far, in MiB (VmHWM). */
const peakRssMiB = (pid: number) => Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) / 1024;

describe('hostile repositories: the host stays untouched, the server stays responsive', () => {
  let server: ServerProcess;
  const repoWith = suiteRepos();
  let idleHelpMs = 0;

  before(async () => {
    server = await startServer();
    // What --help costs here when nothing else runs (an SSH handshake on a loaded test machine).
    const times: number[] = [];
    for (let i = 0; i < 3; i++) times.push((await timedHelp()).ms);
    idleHelpMs = Math.max(...times);
  });
  after(async () => {
    await server.stop();
    removeAll(server.workDir);
  });

  async function timedHelp(): Promise<{ ms: number; code: number | null }> {
    const started = process.hrtime.bigint();
    const res = await ssh(server, ['buildbot.sh', '--help']);
    return { ms: Number(process.hrtime.bigint() - started) / 1e6, code: res.code };
  }

  /**
   * Runs a build of `files` while another client asks for --help over and over. Every
   * answer must come within a second of what --help costs on an idle server: a server whose
   * one thread is busy with repository content answers nobody.
   */
  async function hostileBuild(name: string, files: Files, opts: { service?: string } = {}): Promise<RunResult> {
    const repo = repoWith(name, files);
    const image = unique(name);
    const build = startSsh(server, remote(buildArgs({ service: opts.service ?? image, repo: repo.url, revision: 'main', image })));
    let finished = false;
    void build.done.then(() => (finished = true));
    const answers: number[] = [];
    do {
      const help = await timedHelp();
      assert.equal(help.code, 0, 'another client got its --help while the hostile build ran');
      answers.push(help.ms);
    } while (!finished);
    const res = await build.done;
    assert.ok(Math.max(...answers) < idleHelpMs + 1000, `--help took ${answers.map((ms) => ms.toFixed(0)).join(', ')} ms during the build, ${idleHelpMs.toFixed(0)} ms idle`);
    assert.deepEqual(await registryTags(image), res.code === 0 ? ['1.0.0'] : [], 'pushed only when the build passed');
    assert.deepEqual(await buildContainers(), [], 'no container was left behind');
    assertNoSecrets(res.stdout, res.stderr, server.log());
    return res;
  }

  it('VERSION -> /tmp/canary: the canary keeps its content, the build is refused with EREPOFILE', async () => {
    const canary = `/tmp/canary-${unique('v')}`;
    writeFileSync(canary, 'canary\n');
    try {
      const res = await hostileBuild('version-canary', plainRepo({ VERSION: { symlink: canary } }));
      assert.equal(res.code, 1);
      assert.match(res.stderr, /^error: VERSION in the repository is a symbolic link; buildbot reads and writes only regular files/m);
      assert.equal(readFileSync(canary, 'utf8'), 'canary\n');
    } finally {
      rmSync(canary, { force: true });
    }
  });

  it('VERSION -> the server\'s host key (absolute and relative): the key is unchanged and the server still starts', async () => {
    const hostKey = path.join(server.workDir, 'ssh_host_ed25519_key');
    const before = readFileSync(hostKey);
    for (const [name, target] of [['version-hostkey-abs', hostKey], ['version-hostkey-rel', '../ssh_host_ed25519_key'], ['version-hostkey-rel2', '../../ssh_host_ed25519_key']]) {
      const res = await hostileBuild(name, plainRepo({ VERSION: { symlink: target } }));
      assert.equal(res.code, 1, res.stderr);
      assert.match(res.stderr, /^error: VERSION in the repository is a symbolic link/m);
    }
    assert.deepEqual(readFileSync(hostKey), before);
    const again = await startServer({ workDir: server.workDir });
    try {
      assert.equal(again.fingerprint, server.fingerprint);
    } finally {
      await again.stop();
    }
  });

  it('a Dockerfile of two million blank lines is refused as too large, and costs the server nothing', async () => {
    const res = await hostileBuild('blank-dockerfile', { Dockerfile: `${'\n'.repeat(2_000_000)}FROM ${testEnv().busyboxImage}\n` });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^error: Dockerfile in the repository is larger than 1024 KiB, the most buildbot reads of it/m);
  });

  it('Dockerfile -> /dev/zero is refused, not read', async () => {
    const res = await hostileBuild('zero-dockerfile', { Dockerfile: { symlink: '/dev/zero' } });
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^error: Dockerfile in the repository is a symbolic link/m);
  });

  it('build.sh -> a host file is refused, not read', async () => {
    const res = await hostileBuild('link-buildsh', plainRepo({ 'build.sh': { symlink: '/etc/passwd' } }));
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^error: build\.sh in the repository is a symbolic link/m);
    assert.doesNotMatch(res.stdout + res.stderr, /root:x:0:0/);
  });

  it('a regular VERSION in the repository is replaced by the tag, as before', async () => {
    const repo = repoWith('version-regular', staticSite());
    const image = unique('version-regular');
    const res = await ssh(server, remote(buildArgs({ service: image, repo: repo.url, revision: 'main', image })));
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /building 1\.0\.0 of /);
  });

  it('.dockerignore `(a+)+b` with a file of 40 a\'s: matched literally in no time, as docker does', async () => {
    const as = 'a'.repeat(40);
    const res = await hostileBuild('regex-dockerignore', {
      Dockerfile: `FROM ${testEnv().busyboxImage}\n#test_in_container_entrypoint=sh -c 'test -e /src/${as} && test -e /src/key1.pem && ! test -e /src/key+1.pem && ! test -e "/src/(a+)+b" && echo context-ok'\nCOPY . /src\n`,
      '.dockerignore': '(a+)+b\nkey+1.pem\n',
      [as]: 'x\n', '(a+)+b': 'x\n', 'key+1.pem': 'secret\n', 'key1.pem': 'x\n',
    });
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /context-ok/);
  });

  it('a .dockerignore docker would reject, or too costly to match, is a clear error naming the line', async () => {
    const bad = await hostileBuild('bad-dockerignore', plainRepo({ '.dockerignore': '# fine\nfoo(\nbar[\n' }));
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /^error: \.dockerignore line 3 cannot be used: a character class/m);
    const costly = await hostileBuild('costly-dockerignore', plainRepo({ '.dockerignore': '*a*a*a*a*a*a*a*a*b\n'.repeat(2000), [`${'a'.repeat(200)}/${'a'.repeat(200)}b`]: 'x\n' }));
    assert.equal(costly.code, 1);
    assert.match(costly.stderr, /^error: \.dockerignore is too costly to match: the patterns up to line \d+ took more than the allowed work for the single path "a+…a+b"/m);
  });

  it('build.sh makes .dockerignore a directory holding a 3 GB sparse file: refused after one header, the server\'s memory stays low', async () => {
    const res = await hostileBuild('sparse-dockerignore', scriptRepo(
      'rm -f .dockerignore; mkdir .dockerignore; dd if=/dev/zero of=.dockerignore/x bs=1M count=1 seek=3000 2>/dev/null',
      'true',
    ));
    assert.equal(res.code, 1);
    assert.match(res.stderr, /^error: \.dockerignore in what build\.sh left in \/project is a directory; buildbot reads and writes only regular files/m);
    const peak = peakRssMiB(server.child.pid!);
    assert.ok(peak < 400, `the server's peak RSS is ${peak.toFixed(0)} MiB`);
  });

  it('device nodes and FIFOs that build.sh makes stay out of the context', async () => {
    const res = await hostileBuild('special-files', scriptRepo(
      'mkfifo fifo; mknod null-dev c 1 3; mknod blk b 7 0; echo kept > regular',
      'test -f /src/regular && ! test -e /src/fifo && ! test -e /src/null-dev && ! test -e /src/blk && echo context-ok',
    ));
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /context-ok/);
  });

  it('hard links inside /project are kept; one to a file .dockerignore leaves out is EHARDLINK', async () => {
    const ok = await hostileBuild('hardlinks-ok', scriptRepo(
      'mkdir -p d; echo linked > d/a; ln d/a b; ln d/a d/c',
      'grep -q linked /src/b && grep -q linked /src/d/c && echo context-ok',
    ));
    assert.equal(ok.code, 0, ok.stderr);
    assert.match(ok.stdout, /context-ok/);
    const leak = await hostileBuild('hardlink-leak', scriptRepo('echo s3cret > private.key; ln private.key public.txt', 'true', { '.dockerignore': 'private.key\n' }));
    assert.equal(leak.code, 1);
    assert.match(leak.stderr, /^error: public\.txt in the build context is a hard link to private\.key, which \.dockerignore \(or buildbot, for \.git and \.hg\) leaves out/m);
  });

  it('.git and .hg are left out at any depth, whether committed or made by build.sh', async () => {
    const res = await hostileBuild('nested-vcs', scriptRepo(
      'mkdir -p vendor/lib/.git; echo "url = secret" > vendor/lib/.git/config; echo code > vendor/lib/main.c',
      '! test -e /src/.git && ! test -e /src/vendor/lib/.git && ! test -e /src/sub/.hg && test -f /src/vendor/lib/main.c && test -f /src/sub/file && echo context-ok',
      { 'sub/.hg/hgrc': '[paths]\n', 'sub/file': 'x\n' },
    ));
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /context-ok/);
  });

  it('a context of many files against many patterns keeps the server answering', async () => {
    const patterns = Array.from({ length: 400 }, (_, i) => `**/*x${i}*y*z*`).join('\n');
    const res = await hostileBuild('many-files', scriptRepo(
      'mkdir -p many; cd many; i=0; while [ $i -lt 2000 ]; do mkdir -p d$((i % 50)); : > d$((i % 50))/file-aaaaaaaaaaaaaaaaaaaa-$i; i=$((i+1)); done',
      'test -d /src/many/d7 && echo context-ok',
      { '.dockerignore': `${patterns}\n` },
    ));
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /context-ok/);
  });

  const SHOW_LIMITS = [
    'echo "memory=$(cat /sys/fs/cgroup/memory.max 2>/dev/null || cat /sys/fs/cgroup/memory/memory.limit_in_bytes)"',
    'echo "pids=$(cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max)"',
    'grep CapEff /proc/self/status',
  ].join('; ');
  const NET_RAW = 13n;
  const capEff = (stdout: string) => BigInt(`0x${/CapEff:\s+([0-9a-f]+)/.exec(stdout)![1]}`);

  it('build containers get 4 GiB of memory, 4096 processes and no NET_RAW by default', async () => {
    const res = await hostileBuild('default-limits', scriptRepo(SHOW_LIMITS, 'grep CapEff /proc/self/status'));
    assert.equal(res.code, 0, res.stderr);
    assert.match(res.stdout, /^memory=4294967296$/m);
    assert.match(res.stdout, /^pids=4096$/m);
    const [builder, tester] = [...res.stdout.matchAll(/CapEff:\s+[0-9a-f]+/g)].map((m) => capEff(m[0]));
    assert.equal((builder >> NET_RAW) & 1n, 0n, 'the builder has no NET_RAW');
    assert.equal((tester >> NET_RAW) & 1n, 0n, 'the in-image test has no NET_RAW');
  });

  it('--build-memory and --build-pids set the limits; a fork bomb in build.sh hits them and the build fails cleanly', async () => {
    const limited = await startServer({ args: ['--build-memory', '256m', '--build-pids', '64'] });
    try {
      const show = repoWith('set-limits', scriptRepo(SHOW_LIMITS, 'true'));
      const image = unique('set-limits');
      const res = await ssh(limited, remote(buildArgs({ service: image, repo: show.url, revision: 'main', image })));
      assert.equal(res.code, 0, res.stderr);
      assert.match(res.stdout, /^memory=268435456$/m);
      assert.match(res.stdout, /^pids=64$/m);

      const bomb = repoWith('fork-bomb', scriptRepo('i=0; while [ $i -lt 500 ]; do sleep 600 & i=$((i+1)); done; wait', 'true'));
      const bombImage = unique('fork-bomb');
      const failed = await ssh(limited, remote(buildArgs({ service: bombImage, repo: bomb.url, revision: 'main', image: bombImage })));
      assert.notEqual(failed.code, 0);
      assert.match(failed.stderr, /can't fork|Resource temporarily unavailable/);
      assert.match(failed.stderr, /^error: build\.sh exited with code \d+/m);
      assert.deepEqual(await buildContainers(), []);
      assert.equal((await ssh(limited, ['buildbot.sh', '--help'])).code, 0);
    } finally {
      await limited.stop();
      removeAll(limited.workDir);
    }
  });
});
