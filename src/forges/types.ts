/** The forges buildbot takes webhooks from and posts commit statuses to, and what it knows of each. */
export const FORGES = ['github', 'gitlab', 'gitea', 'bitbucket'] as const;
export type Forge = (typeof FORGES)[number];

/** Where each forge's status API lives when `api_url` is not given. */
export const DEFAULT_API_URL: Record<Forge, string> = {
  github: 'https://api.github.com',
  gitlab: 'https://gitlab.com/api/v4',
  gitea: 'https://gitea.com/api/v1',
  bitbucket: 'https://api.bitbucket.org/2.0',
};

export interface StatusTarget {
  apiUrl: string;
  /** A secret: never logged, shown or stored. */
  token: string;
  context: string;
}

export interface ForgeHook {
  /** owner/name (GitLab: the project's full path; Bitbucket: workspace/slug). */
  repository: string;
  /** A secret. */
  secret: string;
  status?: StatusTarget;
}
