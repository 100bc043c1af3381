/**
 * A strict dotenv reader for `tussilago env set --from-file`. Accepted, one per line:
 *
 *   KEY=value            unquoted; ends at a ` #` comment or the end of the line, surrounding blanks trimmed
 *   KEY="a \"b\" \\ c"   double quotes; only \" and \\ are escapes
 *   KEY='literal'        single quotes; no escapes
 *   export KEY=value     the shell's `export` prefix is allowed
 *   # comment, blank lines
 *
 * Anything else (a line without `=`, blanks around `=`, an unterminated quote, text after a closing quote, a key
 * twice) is refused with its line number. Error messages never contain a value: the file holds secrets.
 * Keys are checked for shape only; what a valid key or value is stays the domain's decision (src/domain/).
 */

export interface DotenvEntry {
  key: string;
  value: string;
  line: number;
}

export class DotenvError extends Error {
  readonly line: number;
  constructor(line: number, problem: string) {
    super(`line ${line}: ${problem}`);
    this.name = "DotenvError";
    this.line = line;
  }
}

const ASSIGNMENT_RE = /^(?:export[ \t]+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$/;

function quoted(rest: string, quote: '"' | "'", line: number): string {
  let value = "";
  let i = 1;
  for (; i < rest.length; i++) {
    const c = rest[i];
    if (c === quote) break;
    if (c === "\\" && quote === '"') {
      const next = rest[i + 1];
      if (next !== '"' && next !== "\\") throw new DotenvError(line, 'only \\" and \\\\ are escapes in double quotes');
      value += next;
      i++;
      continue;
    }
    value += c;
  }
  if (i >= rest.length) throw new DotenvError(line, `unterminated ${quote === '"' ? "double" : "single"} quote`);
  const after = rest.slice(i + 1);
  if (!/^(?:[ \t]*|[ \t]+#.*)$/.test(after)) throw new DotenvError(line, "unexpected text after the closing quote");
  return value;
}

function unquoted(rest: string, line: number): string {
  const value = rest.replace(/[ \t]+#.*$/, "").trim();
  if (/["']/.test(value.charAt(0))) throw new DotenvError(line, "unterminated quote");
  return value;
}

export function parseDotenv(text: string): DotenvEntry[] {
  const entries: DotenvEntry[] = [];
  const seen = new Map<string, number>();
  const lines = text.replace(/^\uFEFF/, "").split("\n");
  lines.forEach((raw, index) => {
    const line = index + 1;
    const content = raw.endsWith("\r") ? raw.slice(0, -1) : raw;
    const trimmed = content.trim();
    if (trimmed === "" || trimmed.startsWith("#")) return;
    const match = ASSIGNMENT_RE.exec(content.trimStart());
    if (!match) {
      throw new DotenvError(line, "expected KEY=VALUE (no blanks around '=', keys of letters, digits and _)");
    }
    const key = match[1] ?? "";
    const rest = match[2] ?? "";
    const value =
      rest.startsWith('"') || rest.startsWith("'")
        ? quoted(rest, rest.charAt(0) as '"' | "'", line)
        : unquoted(rest, line);
    const earlier = seen.get(key);
    if (earlier !== undefined) throw new DotenvError(line, `${key} is already set on line ${earlier}`);
    seen.set(key, line);
    entries.push({ key, value, line });
  });
  return entries;
}
