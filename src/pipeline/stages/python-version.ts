/**
 * Which Python an app gets (docs/python-apps.md, "Python versions"): `.python-version`, else `[project]
 * requires-python` in pyproject.toml (the newest version on offer that satisfies it), else the platform default.
 * Pure functions over text the detect stage read through safe-read; the versions on offer are the keys of the
 * `pythonImages` setting.
 */

export interface PythonChoice {
  version: string;
  /** Where the version came from, shown in the deployment's progress. */
  source: ".python-version" | "requires-python" | "default";
}

/** Why no version on offer fits; the detect stage turns it into a TenantError naming the versions on offer. */
export class PythonVersionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "PythonVersionError";
  }
}

type Release = readonly number[];

const VERSION_KEY = /^3\.\d{1,2}$/;

function parseRelease(text: string): Release | undefined {
  if (!/^\d{1,4}(\.\d{1,4}){0,3}$/.test(text)) return undefined;
  return text.split(".").map(Number);
}

function compare(a: Release, b: Release): number {
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return 0;
}

/** Newest first, numerically ("3.14" before "3.9"). */
export function offeredVersions(images: Readonly<Record<string, string>>): string[] {
  return Object.keys(images)
    .filter((v) => VERSION_KEY.test(v))
    .sort((a, b) => compare(parseRelease(b) ?? [], parseRelease(a) ?? []));
}

/**
 * `.python-version` as uv and pyenv write it: the first line that is not a comment, e.g. `3.14`, `3.14.2`,
 * `cpython-3.14`, `cpython@3.14.2`, `python3.14`. Only major.minor matters: each image ships one patch release.
 */
export function pythonVersionFileRequest(text: string): string {
  const line = text
    .split(/\r?\n/)
    .map((l) => l.trim())
    .find((l) => l !== "" && !l.startsWith("#"));
  if (line === undefined) throw new PythonVersionError(".python-version is empty");
  const m = /^(?:cpython[-@]?|python)?(\d{1,2})\.(\d{1,3})(?:\.\d{1,3})?(?:[-+].*)?$/i.exec(line);
  if (!m) throw new PythonVersionError(`.python-version must name a version like 3.14 (found ${printable(line)})`);
  return `${m[1]}.${Number(m[2])}`;
}

/**
 * Does Python `major.minor` satisfy a PEP 440 specifier set? The candidate is compared as `major.minor.0`, and
 * `==`/`!=` with a trailing `.*` match on prefixes, so `>=3.12`, `<3.15`, `~=3.13`, `==3.14.*` and `!=3.13.*` work
 * as written. Unknown syntax throws: guessing would build on an interpreter the project did not ask for.
 */
export function satisfies(version: string, specifiers: string): boolean {
  const candidate = parseRelease(version);
  if (!candidate) throw new PythonVersionError(`not a version: ${printable(version)}`);
  const clauses = specifiers
    .split(",")
    .map((c) => c.trim())
    .filter((c) => c !== "");
  if (clauses.length === 0) throw new PythonVersionError("requires-python is empty");
  return clauses.every((clause) => clauseHolds(candidate, clause));
}

function clauseHolds(candidate: Release, clause: string): boolean {
  const m = /^(~=|===|==|!=|<=|>=|<|>)\s*v?(\d{1,4}(?:\.\d{1,4}){0,3})(\.\*)?$/.exec(clause);
  if (!m) throw new PythonVersionError(`requires-python: cannot read ${printable(clause)}`);
  const [, op, text, wildcard] = m as unknown as [string, string, string, string | undefined];
  const spec = parseRelease(text) ?? [];
  if (wildcard !== undefined) {
    if (op !== "==" && op !== "!=")
      throw new PythonVersionError(`requires-python: ${printable(clause)}: .* needs == or !=`);
    const prefix = spec.every((n, i) => (candidate[i] ?? 0) === n);
    return op === "==" ? prefix : !prefix;
  }
  const c = compare(candidate, spec);
  switch (op) {
    case "==":
    case "===":
      return c === 0;
    case "!=":
      return c !== 0;
    case "<=":
      return c <= 0;
    case ">=":
      return c >= 0;
    case "<":
      return c < 0;
    case ">":
      return c > 0;
    default: {
      // ~=X.Y[.Z]: >= X.Y[.Z] and the same release up to the last-but-one component.
      if (spec.length < 2) throw new PythonVersionError(`requires-python: ${printable(clause)} needs two components`);
      const head = spec.slice(0, -1);
      return c >= 0 && head.every((n, i) => (candidate[i] ?? 0) === n);
    }
  }
}

/** `[project]` → `requires-python = "…"` (one-line basic or literal string), undefined when absent. */
export function requiresPython(pyproject: string): string | undefined {
  let inProject = false;
  for (const raw of pyproject.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("[")) {
      inProject = line === "[project]";
      continue;
    }
    if (!inProject) continue;
    const m = /^requires-python\s*=\s*(?:"([^"\\]*)"|'([^']*)')\s*(?:#.*)?$/.exec(line);
    if (m) return m[1] ?? m[2];
  }
  return undefined;
}

/** The version an app gets, or PythonVersionError naming what it asked for and what is on offer. */
export function choosePython(
  files: { pythonVersionFile: string | undefined; pyproject: string | undefined },
  images: Readonly<Record<string, string>>,
  defaultVersion: string,
): PythonChoice {
  const offered = offeredVersions(images);
  const onOffer = `versions on offer: ${offered.join(", ")}`;
  if (files.pythonVersionFile !== undefined) {
    const version = pythonVersionFileRequest(files.pythonVersionFile);
    if (!offered.includes(version)) {
      throw new PythonVersionError(`Python ${version} (from .python-version) is not available here; ${onOffer}`);
    }
    return { version, source: ".python-version" };
  }
  const spec = files.pyproject !== undefined ? requiresPython(files.pyproject) : undefined;
  if (spec !== undefined) {
    const version = offered.find((v) => satisfies(v, spec));
    if (version === undefined) {
      throw new PythonVersionError(
        `no Python here satisfies requires-python ${printable(spec)} (pyproject.toml); ${onOffer}`,
      );
    }
    return { version, source: "requires-python" };
  }
  return { version: defaultVersion, source: "default" };
}

/** Tenant text inside our messages: bounded and printable, so it cannot forge lines in the thread or the log. */
function printable(text: string): string {
  const clean = text.replace(/[^\x20-\x7e]/g, "?");
  return JSON.stringify(clean.length > 60 ? `${clean.slice(0, 60)}…` : clean);
}
