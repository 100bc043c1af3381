/**
 * Bounded exponential backoff with full jitter. BullMQ's built-in "exponential" has no cap, so a job with many
 * attempts would wait hours; this one never waits more than `maxMs`. Pure (no I/O), so every layer may use it:
 * the pipeline's job retries and the adapters' HTTP retries alike (docs/architecture.md).
 */
export interface BackoffOptions {
  baseMs: number;
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffOptions = { baseMs: 1_000, maxMs: 60_000 };

export function cappedExponentialDelay(
  attempt: number,
  options: BackoffOptions = DEFAULT_BACKOFF,
  random = Math.random,
): number {
  const exp = Math.min(options.maxMs, options.baseMs * 2 ** Math.max(0, attempt - 1));
  // "Full jitter" keeps a burst of retries from synchronising; the floor of half the step keeps progress.
  return Math.round(exp / 2 + random() * (exp / 2));
}

/** BullMQ worker `settings.backoffStrategy` for jobs added with `backoff: { type: "capped-exponential" }`. */
export function bullBackoffStrategy(attemptsMade: number, type?: string): number {
  if (type !== "capped-exponential") return -1;
  return cappedExponentialDelay(attemptsMade);
}
