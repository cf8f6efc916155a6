export const REDACTED = '***';
export const REDACTED_BYTES = Buffer.from(REDACTED);

export interface Redactor {
  /** Replaces every secret in text. */
  redact(text: string): string;
  /**
   * The same on bytes, without decoding them: a chunk may end inside a UTF-8 character.
   * Returns the very buffer when it holds no secret (the common case, no copy).
   */
  redactBytes(bytes: Buffer): Buffer;
  /** Where redactBytes would replace: [start, end) of each secret, in order, none overlapping. */
  secretRanges(bytes: Buffer): Array<[number, number]>;
  /**
   * How many trailing bytes could be the start of a secret and must be held back until more
   * arrives, so a secret split across two chunks is still caught; with any whole secret that
   * such a tail would cut in two.
   */
  unsafeTailLength(bytes: Buffer): number;
}

export function createRedactor(secrets: Iterable<string>): Redactor {
  // Longest first, so a secret that contains another is replaced whole.
  const list = [...new Set([...secrets].filter((s) => s.length > 0))].sort((a, b) => b.length - a.length);
  const asBytes = list.map((s) => Buffer.from(s));
  // Whatever holds a secret holds one that contains no other (the key's text holds its body
  // lines), so only those are searched for on the hot path.
  const needles = asBytes.filter((s) => !asBytes.some((other) => other !== s && other.length < s.length && s.includes(other)));
  const secretRanges = (bytes: Buffer): Array<[number, number]> => {
    // Buffer.includes is a native search: output without secrets costs one scan per needle.
    if (!needles.some((needle) => bytes.includes(needle))) return [];
    const ranges: Array<[number, number]> = [];
    for (let from = 0; ;) {
      let at = -1;
      let length = 0;
      for (const secret of asBytes) {
        const i = bytes.indexOf(secret, from);
        // Strictly earlier only: at the same position the longer secret, seen first, wins.
        if (i >= 0 && (at < 0 || i < at)) [at, length] = [i, secret.length];
      }
      if (at < 0) return ranges;
      ranges.push([at, at + length]);
      from = at + length;
    }
  };
  return {
    redact(text) {
      let out = text;
      for (const secret of list) if (out.includes(secret)) out = out.split(secret).join(REDACTED);
      return out;
    },
    secretRanges,
    redactBytes(bytes) {
      const ranges = secretRanges(bytes);
      if (!ranges.length) return bytes;
      const parts: Buffer[] = [];
      let from = 0;
      for (const [start, end] of ranges) {
        parts.push(bytes.subarray(from, start), REDACTED_BYTES);
        from = end;
      }
      parts.push(bytes.subarray(from));
      return Buffer.concat(parts);
    },
    unsafeTailLength(bytes) {
      // Per secret, the earliest position in the last (length - 1) bytes from which the rest
      // of the chunk is the secret's beginning; compared in place, as this runs on every chunk.
      let longest = 0;
      for (const secret of asBytes) {
        let at = bytes.indexOf(secret[0], Math.max(0, bytes.length - secret.length + 1));
        while (at >= 0 && bytes.length - at > longest) {
          if (bytes.compare(secret, 0, bytes.length - at, at) === 0) {
            longest = bytes.length - at;
            break;
          }
          at = bytes.indexOf(secret[0], at + 1);
        }
      }
      // A whole secret that the cut would split (its end overlapping another's beginning) is
      // held too, or its first part would leave unredacted.
      for (let cut = bytes.length - longest, moved = longest > 0; moved;) {
        moved = false;
        for (const secret of asBytes) {
          const at = bytes.indexOf(secret, Math.max(0, cut - secret.length + 1));
          if (at >= 0 && at < cut) {
            cut = at;
            moved = true;
          }
        }
        longest = bytes.length - cut;
      }
      return longest;
    },
  };
}
