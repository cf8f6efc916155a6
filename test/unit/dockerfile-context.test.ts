import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { contextNeeds } from '../../src/context/dockerfile-context.js';
import { linksWithin, LinkOutOfPart } from '../../src/context/tar.js';

const names = (text: string, dockerfile = 'Dockerfile') => {
  const needs = contextNeeds(text, dockerfile);
  return 'all' in needs ? `all: ${needs.all}` : needs.names.join(' ');
};

describe('what of the context a Dockerfile reads (issue 22)', () => {
  it('names the top-level paths of COPY and ADD sources', () => {
    assert.equal(names('FROM busybox\nCOPY out/ /app/\nADD --chmod=755 ./bin/tool conf.d /usr/bin/\n'), 'bin conf.d out');
    assert.equal(names('FROM busybox\nCOPY ["public/index.html", "x y/z", "/srv/"]\n', 'docker/Dockerfile.prod'), 'public x y');
    assert.equal(names('FROM busybox AS b\nRUN make\nFROM busybox\nCOPY --from=b /out /out\nCOPY \\\n  # a comment inside\n  dist /dist\n'), 'dist');
    assert.equal(names('FROM busybox\nADD https://example.com/x.tar /x\nCOPY a /a\n'), 'a');
  });
  it('reports the FROM images, not the stages', () => {
    const needs = contextNeeds('FROM --platform=linux/amd64 golang:1.19 AS build\nFROM build AS test\nFROM scratch\nFROM registry/base\n', 'Dockerfile');
    assert.ok(!('all' in needs));
    assert.deepEqual(needs.from, ['golang:1.19', 'registry/base']);
  });
  for (const [what, text] of [
    ['the whole context', 'FROM busybox\nCOPY . /src\n'],
    ['./', 'FROM busybox\nCOPY ./ /src\n'],
    ['a glob in the first part', 'FROM busybox\nCOPY *.txt /src/\n'],
    ['a variable', 'FROM busybox\nARG D=out\nCOPY $D /src/\n'],
    ['..', 'FROM busybox\nCOPY out/../src /src/\n'],
    ['a heredoc', 'FROM busybox\nCOPY <<EOF /x\nhi\nEOF\n'],
    ['RUN --mount', 'FROM busybox\nRUN --mount=type=bind,target=/src make\n'],
    ['ONBUILD', 'FROM busybox\nONBUILD COPY . /app\n'],
    ['a parser directive', '# syntax=docker/dockerfile:1\nFROM busybox\nCOPY out /out\n'],
    ['an escape directive', '# escape=`\nFROM busybox\nCOPY out /out\n'],
    ['an unknown flag', 'FROM busybox\nCOPY --parents out/a /out\n'],
    ['a variable FROM', 'ARG B=busybox\nFROM $B\nCOPY out /out\n'],
    ['quotes', 'FROM busybox\nCOPY "out" /out\n'],
  ] as const) {
    it(`takes the whole context for ${what}`, () => assert.match(names(text), /^all: /));
  }
  it('keeps links within the named paths, and refuses one that leaves them', () => {
    const check = linksWithin(['out', 'Dockerfile']);
    check('out/a', 'b');
    check('out/sub/a', '../b');
    check('out/a', '/out/c');
    assert.throws(() => check('out/a', '../src/x'), LinkOutOfPart);
    assert.throws(() => check('out/a', '/etc/passwd'), LinkOutOfPart);
    assert.throws(() => check('out', '.'), LinkOutOfPart);
    assert.throws(() => check('out/a', '../../..'), LinkOutOfPart);
  });
});
