import type { BuildOptions } from './build-options.js';

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
    /** The URL without credentials: safe to print, to put in image labels, and what git is given. */
    displayUrl: string;
    /** Credentials of an https URL, base64 of "user:password": git gets them as an HTTP header. */
    basicAuth?: string;
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
    /** Said on stdout when the build starts, e.g. that an option of the login command was ignored. */
    notes: string[];
  };
  /** --timeout: seconds this build may run, at most the server's limit. */
  timeoutSeconds?: number;
  /** Settings only the local command takes (--stall-timeout, --build-timeout): the server has its own. */
  local?: { stallTimeout?: string; buildTimeout?: string };
  /** How the image is built (--build_arg, --target, --dockerfile, …). */
  build: BuildOptions;
  /** Every secret of the request in every form it might appear in output. */
  secrets: string[];
}
