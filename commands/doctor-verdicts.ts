/** One line of `tussilago doctor`: a verdict, what was found, and for WARN and FAIL the exact fix. */

export type Verdict = "PASS" | "WARN" | "FAIL" | "SKIP";

export interface Check {
  name: string;
  verdict: Verdict;
  /** What was found, one line. */
  found: string;
  /** The exact fix (a command or a setting); set for WARN and FAIL. */
  fix?: string | undefined;
}

export const pass = (name: string, found: string): Check => ({ name, verdict: "PASS", found });
export const warn = (name: string, found: string, fix: string): Check => ({ name, verdict: "WARN", found, fix });
export const fail = (name: string, found: string, fix: string): Check => ({ name, verdict: "FAIL", found, fix });
export const skip = (name: string, found: string): Check => ({ name, verdict: "SKIP", found });

/** Outside text (stderr tails, API messages) squeezed to one bounded line. */
export const oneLine = (text: string) => text.replace(/\s+/g, " ").trim().slice(0, 200);
