import { errors, type BuildError } from '../model/errors.js';

/**
 * Turns what git, hg or ssh printed into an error of the catalogue, so the user reads
 * "the git host refused the key" rather than forty lines of tool output.
 */
export function classifyVcsFailure(output: string, ctx: { repo: string; host: string; knownHostsFile: string; what: string; workDir?: string; keyGiven: boolean }): BuildError {
  const text = output.trim();
  if (ctx.workDir && /No space left on device/i.test(text)) return errors.noSpace(ctx.workDir);
  if (/subrepos not enabled/.test(text)) return errors.hgSubrepos();
  if (/REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/i.test(text)) {
    return errors.hostKeyChanged(ctx.host, ctx.knownHostsFile);
  }
  if (/Permission denied \(publickey|Authentication failed|could not read Username|HTTP Basic: Access denied|authorization failed/i.test(text)) {
    return errors.repoAuth(ctx.repo, ctx.keyGiven);
  }
  const unreachable = lineMatching(text, /Could not resolve hostname|Connection refused|Connection timed out|No route to host|Network is unreachable|Could not resolve host|Connection closed by|kex_exchange_identification/i);
  if (unreachable) return errors.repoUnreachable(ctx.repo, unreachable);
  const notFound = lineMatching(text, /does not appear to be a .* repository|Repository not found|not found|no such repository|does not exist/i);
  if (notFound) return errors.repoNotFound(ctx.repo, notFound);
  return errors.vcs(ctx.what, lines(text).at(-1) ?? 'no output');
}

const lines = (text: string) => text.split('\n').map((l) => l.replace(/^(fatal|error|abort|remote): /i, '').trim()).filter(Boolean);

/** The tool's own line that says what happened, to quote in the message. */
const lineMatching = (text: string, re: RegExp) => lines(text).find((l) => re.test(l));

/** The host part of a repository URL, for messages. */
export function hostOf(url: string): string {
  try {
    if (url.includes('://')) {
      const u = new URL(url);
      return u.port ? `${u.hostname}:${u.port}` : u.hostname;
    }
  } catch {
    // fall through to the scp-like form
  }
  return url.replace(/^[^@]*@/, '').split(':')[0];
}
