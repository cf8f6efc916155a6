import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const CONFIG = path.join(ROOT, '.dependency-cruiser.cjs');
const DEPCRUISE = path.join(ROOT, 'node_modules', 'dependency-cruiser', 'bin', 'dependency-cruise.mjs');

const plain = (text: string) => text.replace(/\x1b\[[0-9;]*m/g, '');

/** dependency-cruiser's verdict on the tree under cwd: its exit code and what it printed. */
async function cruise(cwd: string): Promise<{ code: number; out: string }> {
  try {
    // No colours: with CI=true set (as CI runs) chalk colours the names, and the matches below miss.
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [DEPCRUISE, 'src', '--config', CONFIG, '--output-type', 'err'], { cwd, maxBuffer: 8 << 20, env: { ...process.env, FORCE_COLOR: '0', NO_COLOR: '1' } });
    return { code: 0, out: plain(stdout + stderr) };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? -1, out: plain(`${e.stdout ?? ''}${e.stderr ?? ''}`) };
  }
}

describe('the shape of src/ (.dependency-cruiser.cjs)', () => {
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'buildbot-arch-'));
  after(() => rmSync(scratch, { recursive: true, force: true }));

  it('has no import circle and no folder importing one above it', async () => {
    const { code, out } = await cruise(ROOT);
    assert.equal(code, 0, out);
    const cruised = /(\d+) modules, (\d+) dependencies cruised/.exec(out);
    assert.ok(cruised && Number(cruised[1]) > 100, `it looked at the source tree: ${out}`);
  });

  it('refuses an upward import, a circle and an import between the two fronts', async () => {
    const file = (name: string, text: string) => {
      mkdirSync(path.dirname(path.join(scratch, name)), { recursive: true });
      writeFileSync(path.join(scratch, name), text);
    };
    file('tsconfig.json', JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext' } }));
    file('src/model/ids.ts', "import { start } from '../app/start.js';\nexport const id = start;\n");
    file('src/app/start.ts', "export const start = 1;\n");
    file('src/pipeline/a.ts', "import { b } from './b.js';\nexport const a = () => b;\n");
    file('src/pipeline/b.ts', "import { a } from './a.js';\nexport const b = () => a;\n");
    file('src/fronts/http/x.ts', "import { y } from '../ssh/y.js';\nexport const x = y;\n");
    file('src/fronts/ssh/y.ts', 'export const y = 1;\n');
    const { code, out } = await cruise(scratch);
    assert.notEqual(code, 0, out);
    assert.match(out, /no-upward-from-\w+: src\/model\/ids\.ts → src\/app\/start\.ts/);
    assert.match(out, /no-circular: src\/pipeline\/a\.ts/);
    assert.match(out, /no-http-ssh-cross: src\/fronts\/http\/x\.ts → src\/fronts\/ssh\/y\.ts/);
  });
});
