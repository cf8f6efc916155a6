import { testEnv } from './env.js';

/** Reads what the test registry holds through its HTTP API, with the test credentials. */
async function get(pathname: string, accept?: string): Promise<Response> {
  const env = testEnv();
  return fetch(`http://${env.registry}${pathname}`, {
    headers: {
      Authorization: `Basic ${Buffer.from(`${env.registryUser}:${env.registryPassword}`).toString('base64')}`,
      ...(accept ? { Accept: accept } : {}),
    },
  });
}

export async function registryTags(repository: string): Promise<string[]> {
  const res = await get(`/v2/${repository}/tags/list`);
  if (res.status === 404) return [];
  const body = (await res.json()) as { tags?: string[] | null };
  return (body.tags ?? []).sort();
}

export interface PushedImage {
  digest: string;
  labels: Record<string, string>;
}

export async function registryImage(repository: string, tag: string): Promise<PushedImage> {
  const res = await get(`/v2/${repository}/manifests/${tag}`, 'application/vnd.docker.distribution.manifest.v2+json');
  if (!res.ok) throw new Error(`manifest ${repository}:${tag}: HTTP ${res.status}`);
  const digest = res.headers.get('docker-content-digest') ?? '';
  const manifest = (await res.json()) as { config: { digest: string } };
  const config = (await (await get(`/v2/${repository}/blobs/${manifest.config.digest}`)).json()) as { config: { Labels?: Record<string, string> } };
  return { digest, labels: config.config.Labels ?? {} };
}
