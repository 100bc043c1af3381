const UNITS: Readonly<Record<string, number>> = { "": 1_000, s: 1_000, m: 60_000, h: 3_600_000 };

/** "90", "90s", "10m", "1h" → milliseconds; a bare number is seconds. Between 1 s and 24 h, else undefined. */
export function parseDuration(text: string): number | undefined {
  const match = /^(\d{1,6})([smh]?)$/.exec(text.trim());
  if (!match) return undefined;
  const ms = Number(match[1]) * (UNITS[match[2] ?? ""] ?? 1_000);
  return ms >= 1_000 && ms <= 24 * 3_600_000 ? ms : undefined;
}

/** Short elapsed time for progress lines: 850ms, 4.2s, 3m05s. */
export function formatElapsed(ms: number): string {
  const safe = Math.max(0, Math.round(ms));
  if (safe < 1_000) return `${safe}ms`;
  if (safe < 60_000) return `${(safe / 1_000).toFixed(1)}s`;
  const totalSeconds = Math.floor(safe / 1_000);
  const minutes = Math.floor(totalSeconds / 60);
  return `${minutes}m${String(totalSeconds % 60).padStart(2, "0")}s`;
}
