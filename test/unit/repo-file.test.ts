import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { linkSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { REPO_FILE_MAX_BYTES, readRepoFile, writeRepoFile } from '../../src/context/repo-file.js';
import { builderImageOf, scanDockerfile } from '../../src/pipeline/steps/metadata.js';

const refused = (name: string, kind: RegExp) => (err: unknown) => {
  assert.equal((err as { code?: string }).code, 'EREPOFILE');
  assert.match((err as Error).message, new RegExp(`^${name.replace('.', '\\.')} in the repository is ${kind.source}`));
  return true;
};

describe('files of a checkout: regular files only, reads capped, no write through a link', () => {
  const root = mkdtempSync(path.join(os.tmpdir(), 'repo-file-'));
  after(() => rmSync(root, { recursive: true, force: true }));
  const checkout = mkdtempSync(path.join(root, 'checkout-'));
  const outside = path.join(root, 'host-file');
  writeFileSync(outside, 'host secret\n');

  it('reads a regular file, and gives undefined for a missing one', async () => {
    writeFileSync(path.join(checkout, 'Dockerfile'), 'FROM x\n');
    assert.equal(await readRepoFile(checkout, 'Dockerfile'), 'FROM x\n');
    assert.equal(await readRepoFile(checkout, 'build.sh'), undefined);
  });

  it('refuses to read through a symbolic link, a directory, a FIFO or a device', async () => {
    const dir = mkdtempSync(path.join(root, 'kinds-'));
    symlinkSync(outside, path.join(dir, 'Dockerfile'));
    symlinkSync('/dev/zero', path.join(dir, 'build.sh'));
    mkdirSync(path.join(dir, '.dockerignore'));
    execFileSync('mkfifo', [path.join(dir, 'fifo')]);
    await assert.rejects(readRepoFile(dir, 'Dockerfile'), refused('Dockerfile', /a symbolic link/));
    await assert.rejects(readRepoFile(dir, 'build.sh'), refused('build.sh', /a symbolic link/));
    await assert.rejects(readRepoFile(dir, '.dockerignore'), refused('.dockerignore', /a directory/));
    await assert.rejects(readRepoFile(dir, 'fifo'), refused('fifo', /a named pipe/));
    // A device node cannot be made without privileges here: /dev itself stands in for the checkout.
    await assert.rejects(readRepoFile('/dev', 'null'), refused('null', /a device node/));
  });

  it('refuses a file over the cap, naming it and the limit', async () => {
    writeFileSync(path.join(checkout, 'big'), Buffer.alloc(REPO_FILE_MAX_BYTES + 1, 'a'));
    await assert.rejects(readRepoFile(checkout, 'big'), (err: Error) => /^big in the repository is larger than 1024 KiB/.test(err.message));
    writeFileSync(path.join(checkout, 'fits'), Buffer.alloc(REPO_FILE_MAX_BYTES, 'a'));
    assert.equal((await readRepoFile(checkout, 'fits'))!.length, REPO_FILE_MAX_BYTES);
  });

  it('writes VERSION in place of a regular file, and refuses a symbolic link, leaving its target alone', async () => {
    writeFileSync(path.join(checkout, 'VERSION'), 'old\n');
    await writeRepoFile(checkout, 'VERSION', '1.2.3\n');
    assert.equal(readFileSync(path.join(checkout, 'VERSION'), 'utf8'), '1.2.3\n');

    const dir = mkdtempSync(path.join(root, 'link-'));
    symlinkSync(outside, path.join(dir, 'VERSION'));
    await assert.rejects(writeRepoFile(dir, 'VERSION', '6.6.6\n'), refused('VERSION', /a symbolic link/));
    symlinkSync(path.join(root, 'not-there'), path.join(dir, 'dangling'));
    await assert.rejects(writeRepoFile(dir, 'dangling', 'x'), refused('dangling', /a symbolic link/));
    assert.equal(readFileSync(outside, 'utf8'), 'host secret\n');
    assert.throws(() => statSync(path.join(root, 'not-there')), /ENOENT/);
  });

  it('never writes through a hard link to a file outside', async () => {
    const dir = mkdtempSync(path.join(root, 'hard-'));
    linkSync(outside, path.join(dir, 'VERSION'));
    await writeRepoFile(dir, 'VERSION', '1.0.0\n');
    assert.equal(readFileSync(outside, 'utf8'), 'host secret\n');
    assert.equal(readFileSync(path.join(dir, 'VERSION'), 'utf8'), '1.0.0\n');
  });
});

describe('build.sh and Dockerfile lines, read without regular expressions the content can make slow', () => {
  it('finds the builder image on the first well-formed line', () => {
    assert.equal(builderImageOf('#!/bin/sh\n# build_inside_docker_image = node:20 \r\nmake\n'), 'node:20');
    assert.equal(builderImageOf('#build_inside_docker_image=a b\n#build_inside_docker_image=busybox\n'), 'busybox');
    assert.equal(builderImageOf(' #build_inside_docker_image=x\necho\n'), undefined);
    assert.equal(builderImageOf('#build_inside_docker_image=\n'), undefined);
  });
  it('finds the test line and the last FROM', () => {
    const df = 'FROM golang:1.22 AS build\n#test_in_container_entrypoint= sh -c "true"\nfrom --platform=linux/amd64 alpine:3 AS run\n  FROM\tbusybox\nRUN echo FROM x\n';
    assert.deepEqual(scanDockerfile(df), { testLine: ' sh -c "true"', imageFrom: 'busybox' });
    assert.deepEqual(scanDockerfile('\n'.repeat(100_000) + 'FROM a\n'), { testLine: undefined, imageFrom: 'a' });
    assert.deepEqual(scanDockerfile('FROMAGE x\n#test_in_container_entrypointx=1\n'), { testLine: undefined, imageFrom: undefined });
  });
});
