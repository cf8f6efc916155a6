export type Vcs = 'git' | 'hg';

export interface RegistryLogin {
  username: string;
  password: string;
}

/** One build, fully validated. Everything the server knows about a build arrives in it. */
export interface BuildRequest {
  serviceId: string;
  repo: {
    url: string;
    vcs: Vcs;
    /** The URL without credentials: safe to print and to put in image labels. */
    displayUrl: string;
  };
  /** Private key text (OpenSSH or PEM), or undefined for a public repository. */
  repoAuthKey?: string;
  revision: string;
  /** Repository part of the image reference, without a tag. */
  image: string;
  tags: string[];
  registry: {
    /** host[:port], or docker.io for Docker Hub. */
    server: string;
    login?: RegistryLogin;
  };
  /** Every secret of the request in every form it might appear in output. */
  secrets: string[];
}
