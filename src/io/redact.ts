export const REDACTED = '***';

export interface Redactor {
  /** Replaces every secret in text. */
  redact(text: string): string;
  /** The same on bytes; returns the very buffer when it holds no secret (the common case, no copy). */
  redactBytes(bytes: Buffer): Buffer;
  /**
   * How many trailing bytes could be the start of a secret and must be held back until more
   * arrives, so a secret split across two chunks is still caught.
   */
  unsafeTailLength(bytes: Buffer): number;
}

export function createRedactor(secrets: Iterable<string>): Redactor {
  // Longest first, so a secret that contains another is replaced whole.
  const list = [...new Set([...secrets].filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  const asBytes = list.map((s) => Buffer.from(s));
  const longest = Math.max(0, ...asBytes.map((b) => b.length));
  const redact = (text: string) => {
    let out = text;
    for (const secret of list) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
    return out;
  };
  return {
    redact,
    redactBytes(bytes) {
      // Buffer.indexOf is a native search: output without secrets is passed on untouched.
      if (!asBytes.some((secret) => bytes.includes(secret))) return bytes;
      return Buffer.from(redact(bytes.toString('utf8')));
    },
    unsafeTailLength(bytes) {
      for (let n = Math.min(longest - 1, bytes.length); n > 0; n--) {
        const tail = bytes.subarray(bytes.length - n);
        if (asBytes.some((secret) => secret.length > n && secret.subarray(0, n).equals(tail))) return n;
      }
      return 0;
    },
  };
}
