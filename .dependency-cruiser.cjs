// The shape of src/, checked by the suite (test/unit/architecture.test.ts): no import circle, and no
// folder importing one above it. Layers from the top; a folder may import its own layer's files and
// any layer below, never one above. fronts/ssh and fronts/http are siblings: neither imports the
// other (what both need lives in fronts/*.ts or lower).
const LAYERS = [
  ['cli'],
  ['app'],
  ['fronts'],
  ['projects'],
  ['forges'],
  ['service'],
  ['engines'],
  ['store'],
  ['pipeline'],
  ['docker'],
  ['vcs', 'context'],
  ['request'],
  ['io'],
  ['log'],
  ['model'],
];
const folder = (names) => `^src/(${names.join('|')})/`;
const rules = LAYERS.slice(1).map((_, i) => {
  const lower = LAYERS.slice(i + 1).flat();
  const above = LAYERS.slice(0, i + 1).flat();
  return {
    name: `no-upward-from-${lower[0]}`,
    comment: `${lower.join(', ')} must not import ${above.join(', ')} (a layer above)`,
    severity: 'error',
    from: { path: folder(lower) },
    to: { path: folder(above) },
  };
});
module.exports = {
  forbidden: [
    { name: 'no-circular', severity: 'error', comment: 'an import circle', from: { path: '^src/' }, to: { circular: true } },
    { name: 'no-ssh-http-cross', severity: 'error', comment: 'the SSH and HTTP fronts are siblings', from: { path: '^src/fronts/ssh/' }, to: { path: '^src/fronts/http/' } },
    { name: 'no-http-ssh-cross', severity: 'error', comment: 'the SSH and HTTP fronts are siblings', from: { path: '^src/fronts/http/' }, to: { path: '^src/fronts/ssh/' } },
    { name: 'no-orphan-src-root', severity: 'error', comment: 'every source file lives in a folder', from: { path: '^src/[^/]+\\.ts$' }, to: {} },
    ...rules,
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    exclude: { path: '^(dist|node_modules)/' },
  },
};
