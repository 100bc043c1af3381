/** What a masked secret value reads as in a log tail. */
export const MASK = "[masked]";

/**
 * Values shorter than this are left alone: "1", "true" or "prod" are not secrets, and masking them would make a log
 * tail unreadable. Anything a secret generator or a person would call a password is longer.
 */
export const MIN_MASKED_LENGTH = 6;

/**
 * The strings to hide for a set of secret values: each value itself and, for URLs with credentials (DATABASE_URL,
 * REDIS_URL), the password alone and percent-decoded, since an app may print the part it failed to use.
 */
export function secretNeedles(values: readonly string[], minLength = MIN_MASKED_LENGTH): string[] {
  const needles = new Set<string>();
  for (const value of values) {
    needles.add(value);
    if (URL.canParse(value)) {
      const password = new URL(value).password;
      if (password !== "") {
        needles.add(password);
        try {
          needles.add(decodeURIComponent(password));
        } catch {
          // not valid percent-encoding: the raw form is already in the set
        }
      }
    }
  }
  // Longest first, so a URL is masked whole before its password part is looked for.
  return [...needles].filter((n) => n.length >= minLength).sort((a, b) => b.length - a.length);
}

/** `text` with every occurrence of each needle replaced by MASK. */
export function maskSecrets(text: string, needles: readonly string[]): string {
  let out = text;
  for (const needle of needles) out = out.split(needle).join(MASK);
  return out;
}
