const UNITS: Readonly<Record<string, number>> = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const MAX_MS = 366 * 86_400_000;

/**
 * How far back an audit query looks: "90s", "30m", "1h", "7d" → ms (1 s to 366 days), else undefined. Its own
 * parser: the audit log outlives the 24 h that src/cli/duration.ts allows for timeouts. No imports, so the CLI's
 * argument parser loads it without the database.
 */
export function parseAuditWindow(text: string): number | undefined {
  const match = /^(\d{1,6})([smhd])$/.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * (UNITS[match[2] ?? ""] ?? 0);
  return ms >= 1_000 && ms <= MAX_MS ? ms : undefined;
}
