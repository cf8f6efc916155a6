/** What the checkout step needs of a version control system; git and hg implement it. */
export interface Repository {
  /** Whether dir holds an intact clone of url (an interrupted clone or another repository does not count). */
  isCloneOf(dir: string, url: string): Promise<boolean>;
  clone(url: string, into: string): Promise<void>;
  /** The full commit id the revision names in the clone, if it is there already. */
  resolve(dir: string, revision: string): Promise<string | undefined>;
  /** Whether a revision of this form can move (branch, tag), so it must be fetched every time. */
  isMovable(revision: string): boolean;
  fetch(dir: string, url: string, revision: string): Promise<void>;
  /**
   * Checks out the commit, discarding every change and untracked or ignored file.
   * fresh: the clone was just made and has no working files, so there is nothing to discard.
   */
  checkout(dir: string, commit: string, fresh: boolean): Promise<void>;
}

export interface VcsContext {
  sshCommand: string;
  env: Record<string, string>;
  signal: AbortSignal;
  /** For an https repository with credentials: its URL (without them) and base64 of "user:password". */
  basicAuth?: { url: string; credentials: string };
  /**
   * Runs one git or hg command under the build's stall watchdog: run calls progress() on every
   * byte the command prints. Without it (tests of the VCS code alone) commands run unwatched.
   */
  guard?: <T>(command: string, run: (progress: () => void) => Promise<T>) => Promise<T>;
}

/** Keeps at most this much of a command's output for its error message (progress lines add up over an hour). */
export const OUTPUT_TAIL = 64 * 1024;

/**
 * A command's stderr without its progress display: each line keeps only what follows its last
 * carriage return inside it (progress redraws itself with "\r"), and blank lines go.
 */
export function withoutProgress(text: string): string {
  // ssh ends its lines with "\r\n": that carriage return ends a line, it does not redraw one.
  return text.split('\n').map((line) => line.replace(/\r+$/, '')).map((line) => line.slice(line.lastIndexOf('\r') + 1)).filter((line) => line.trim() !== '').join('\n');
}

export class VcsCommandError extends Error {
  constructor(
    readonly command: string,
    readonly output: string,
  ) {
    super(`${command}: ${output}`);
  }
}

export const looksLikeCommitId = (rev: string) => /^[0-9a-f]{7,40}$/i.test(rev);
