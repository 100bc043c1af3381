/**
 * Where the CLI writes. Everything goes through these two functions (never console.*), so tests capture output
 * and the follower can redraw.
 */
export interface Output {
  out(text: string): void;
  err(text: string): void;
  /** True when stdout is a terminal: the follower redraws in place instead of printing a line per change. */
  isTTY: boolean;
}

export function processOutput(): Output {
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
    isTTY: process.stdout.isTTY === true,
  };
}

/** A captured Output for tests. */
export function memoryOutput(isTTY = false): Output & { stdout: () => string; stderr: () => string } {
  const out: string[] = [];
  const err: string[] = [];
  return {
    out: (text) => void out.push(text),
    err: (text) => void err.push(text),
    isTTY,
    stdout: () => out.join(""),
    stderr: () => err.join(""),
  };
}

/**
 * Tenant-controlled text (commit messages, container logs, failure excerpts) may carry terminal escape
 * sequences that rewrite the operator's screen or title; keep newlines and tabs, show every other control
 * character as a visible escape.
 */
export function escapeTerminal(text: string): string {
  // biome-ignore lint/suspicious/noControlCharactersInRegex: matching control characters is the point here.
  return text.replace(/[\u0000-\u0008\u000b-\u001f\u007f-\u009f]/g, (c) => {
    return `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`;
  });
}

/** Left-aligned columns separated by two spaces; the header row is the first. */
export function table(rows: readonly (readonly string[])[]): string {
  const widths: number[] = [];
  for (const row of rows) {
    row.forEach((cell, i) => {
      widths[i] = Math.max(widths[i] ?? 0, cell.length);
    });
  }
  return rows
    .map((row) =>
      row
        .map((cell, i) => cell.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export function json(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`;
}
