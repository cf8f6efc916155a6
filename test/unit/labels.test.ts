import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { appendLabels } from '../../src/context/labels.js';

const labels = { 'org.opencontainers.image.revision': 'abc', 'org.opencontainers.image.version': '1.4.2' };

describe('labels as one LABEL instruction', () => {
  it('appends one instruction at the end, where the last stage is', () => {
    assert.equal(appendLabels('FROM a AS build\nRUN x\nFROM b\nCOPY --from=build /x /x', labels),
      'FROM a AS build\nRUN x\nFROM b\nCOPY --from=build /x /x\nLABEL "org.opencontainers.image.revision"="abc" "org.opencontainers.image.version"="1.4.2"\n');
  });
  it('leaves it to the build parameter when a line cannot safely be added', () => {
    assert.equal(appendLabels('FROM a\nRUN echo \\\n', labels), undefined, 'a trailing continuation');
    assert.equal(appendLabels('# escape=`\nFROM a\n', labels), undefined, 'another escape character');
    assert.equal(appendLabels('FROM a\n', { x: 'has "quotes"' }), undefined, 'a value with quotes');
  });
});
