import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BuildProgress, decodeStatus, encodeStatus } from '../../src/docker/buildkit.js';

const at = { seconds: 1, nanos: 0 };
/** Feeds status messages through the wire format, as the engine sends them, and collects the printed lines. */
function display(...statuses: object[]): string[] {
  const lines: string[] = [];
  const progress = new BuildProgress((line) => lines.push(line));
  for (const status of statuses) progress.update(decodeStatus(encodeStatus(status)));
  progress.flush();
  return lines;
}

describe('build progress display', () => {
  it('names each Dockerfile step once, marks cached ones and leaves out BuildKit bookkeeping', () => {
    const lines = display(
      { vertexes: [{ digest: 'i', name: '[internal] load build definition from Dockerfile', started: at }] },
      { vertexes: [{ digest: 'c', name: 'copy /context /', started: at, completed: at }] },
      { vertexes: [{ digest: 'a', name: '[2/3] COPY public /www' }, { digest: 'b', name: '[3/3] RUN make' }] },
      { vertexes: [{ digest: 'a', name: '[2/3] COPY public /www', cached: true, started: at, completed: at }, { digest: 'b', name: '[3/3] RUN make', started: at }] },
      { vertexes: [{ digest: 'b', name: '[3/3] RUN make', started: at, completed: at }] },
    );
    assert.deepEqual(lines, ['[2/3] COPY public /www (cached)', '[3/3] RUN make']);
  });

  it('says once why a --cache_from source was not used (BuildKit goes on without it)', () => {
    const failed = { digest: 'm', name: 'importing cache manifest from r.io/api:1', started: at, completed: at, error: 'unexpected status code 401 Unauthorized' };
    const lines = display({ vertexes: [failed] }, { vertexes: [failed] }, { vertexes: [{ digest: 'r', name: '[2/2] RUN make', started: at, error: 'exit code 2' }] });
    assert.deepEqual(lines, ['importing cache manifest from r.io/api:1', 'warning: importing cache manifest from r.io/api:1 failed: unexpected status code 401 Unauthorized', '[2/2] RUN make']);
  });

  it('prints output line by line, keeping stdout and stderr lines apart and multi-byte characters whole', () => {
    const euro = Buffer.from('€');
    const lines = display(
      { vertexes: [{ digest: 'r', name: '[2/2] RUN x', started: at }] },
      { logs: [{ vertex: 'r', stream: 1, msg: Buffer.from('one\npart') }] },
      { logs: [{ vertex: 'r', stream: 2, msg: Buffer.concat([Buffer.from('err '), euro.subarray(0, 1)]) }] },
      { logs: [{ vertex: 'r', stream: 2, msg: Buffer.concat([euro.subarray(1), Buffer.from('\n')]) }] },
      { logs: [{ vertex: 'r', stream: 1, msg: Buffer.from('ial end') }], vertexes: [{ digest: 'r', name: '[2/2] RUN x', started: at, completed: at }] },
      { warnings: [{ short: Buffer.from('a warning') }] },
    );
    assert.deepEqual(lines, ['[2/2] RUN x', 'one', 'err €', 'partial end', 'warning: a warning']);
  });

  it("prints the classic builder's text line by line, whatever its chunks", () => {
    const lines: string[] = [];
    const progress = new BuildProgress((line) => lines.push(line));
    for (const chunk of ['Step 1/2 : FROM x\nStep 2/', '2 : COPY . /app\n', 'Successfully tagged r/x:1']) progress.text('text', Buffer.from(chunk));
    progress.flush();
    assert.deepEqual(lines, ['Step 1/2 : FROM x', 'Step 2/2 : COPY . /app', 'Successfully tagged r/x:1']);
  });
});
