import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import { CSS, FAVICON } from './style.js';

interface Asset {
  type: string;
  body: Buffer;
  etag: string;
}

/**
 * The monitor's files, served by the server itself (no CDN: build hosts often have no
 * internet). The browser scripts are this folder's own compiled modules; ansi_up comes from
 * node_modules as its authors ship it. Only these names are served: nothing else of the
 * file system is reachable by URL.
 */
const SCRIPTS = ['browser-list.js', 'browser-build.js', 'log-model.js', 'html.js', 'ansi_up.js'];

let assets: Map<string, Asset> | undefined;

function load(): Map<string, Asset> {
  const map = new Map<string, Asset>();
  const add = (name: string, type: string, body: string | Buffer) => {
    const buffer = Buffer.isBuffer(body) ? body : Buffer.from(body);
    map.set(name, { type, body: buffer, etag: `"${createHash('sha256').update(buffer).digest('base64url').slice(0, 22)}"` });
  };
  add('monitor.css', 'text/css; charset=utf-8', CSS);
  add('favicon.svg', 'image/svg+xml', FAVICON);
  for (const name of SCRIPTS) {
    const file = name === 'ansi_up.js' ? createRequire(import.meta.url).resolve('ansi_up') : fileURLToPath(new URL(`./${name}`, import.meta.url));
    let text = readFileSync(file, 'utf8');
    // The browser has no package resolution: the bare import becomes the file served beside it.
    if (name === 'log-model.js') {
      const mapped = text.replace(/from ['"]ansi_up['"];/, "from './ansi_up.js';");
      if (mapped === text) throw new Error('log-model.js no longer imports ansi_up as expected');
      text = mapped;
    }
    text = text.replace(/\n\/\/# sourceMappingURL=.*\n?$/, '\n');
    add(name, 'text/javascript; charset=utf-8', text);
  }
  return map;
}

export function serveAsset(req: IncomingMessage, res: ServerResponse, name: string): true {
  assets ??= load();
  const asset = assets.get(name);
  if (!asset) {
    res.writeHead(404, { 'Content-Type': 'text/plain; charset=utf-8', 'X-Content-Type-Options': 'nosniff' });
    res.end('no such file\n');
    return true;
  }
  const headers = { 'Content-Type': asset.type, ETag: asset.etag, 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff' };
  if (req.headers['if-none-match'] === asset.etag) {
    res.writeHead(304, headers);
    res.end();
    return true;
  }
  res.writeHead(200, { ...headers, 'Content-Length': asset.body.length });
  res.end(req.method === 'HEAD' ? undefined : asset.body);
  return true;
}
