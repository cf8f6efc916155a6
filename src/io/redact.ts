export const REDACTED = '***';

export interface Redactor {
  /** Replaces every secret in text. */
  redact(text: string): string;
  /**
   * How many trailing characters of text could be the start of a secret and must be
   * held back until more text arrives, so a secret split across two chunks is still caught.
   */
  unsafeTailLength(text: string): number;
}

export function createRedactor(secrets: Iterable<string>): Redactor {
  // Longest first, so a secret that contains another is replaced whole.
  const list = [...new Set([...secrets].filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  const longest = list[0]?.length ?? 0;
  return {
    redact(text) {
      let out = text;
      for (const secret of list) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
      return out;
    },
    unsafeTailLength(text) {
      for (let n = Math.min(longest - 1, text.length); n > 0; n--) {
        const tail = text.slice(text.length - n);
        if (list.some((secret) => secret.startsWith(tail))) return n;
      }
      return 0;
    },
  };
}
