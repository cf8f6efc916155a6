import { spawn } from 'node:child_process';
import { startServer } from '../dist/test/helpers/server.js';
import { GitRepo, staticSite } from '../dist/test/helpers/repos.js';
import { buildArgs } from '../dist/test/helpers/build.js';
import { testEnv, engineEnv } from '../dist/test/helpers/env.js';
const env = testEnv();
const TOKEN = 'prof-token-0123456789abcdef';
const server = await startServer({ args: ['--api-token', TOKEN], env: { NODE_OPTIONS: '--require /tmp/prof-preload.cjs' } });
const repo = new GitRepo(`prof-${process.pid}`);
const lines = 20_000_000;
repo.commit({ ...staticSite(), 'build.sh': { mode: 0o755, content: `#!/bin/sh\n#build_inside_docker_image=${env.busyboxImage}\nset -e\nmkdir -p public && echo x > public/index.html\nseq -w 1 ${lines} > /tmp/out.txt\necho START\ncat /tmp/out.txt\necho END\n` } });
const args = [...buildArgs({ service: 'prof', repo: repo.url, revision: 'main', image: 'prof-img', tags: ['1'] }), '--docker_login_cache', Buffer.from(`${env.registryUser}:${env.registryPassword}`).toString('base64')];
for (let i = 0; i < Number(process.env.RUNS ?? 1); i++) {
  const t0 = performance.now();
  const child = spawn('/work/wt/http/bin/buildbot.sh', ['--server', `http://127.0.0.1:${server.httpPort}`, ...args], { env: { PATH: process.env.PATH, HOME: process.env.HOME, ...engineEnv(), BUILDBOT_TOKEN: TOKEN, NODE_OPTIONS: process.env.CLIENT_PROF ? '--require /tmp/prof-preload.cjs' : '' }, stdio: ['ignore', 'pipe', 'inherit'] });
  let bytes = 0; const sizes = [];
  child.stdout.on('data', (c) => { bytes += c.length; });
  const code = await new Promise((r) => child.on('close', r));
  console.log(`code ${code} ${bytes} bytes ${(performance.now() - t0).toFixed(0)} ms`);
}
await server.stop();
repo.dispose();
