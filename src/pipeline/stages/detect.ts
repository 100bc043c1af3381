import { RepoFileError, readRepoFile, repoFileExists } from "../../infra/safe-read.ts";
import { DEFAULT_PYTHON, DEFAULT_PYTHON_IMAGES } from "../../lib/python-images.ts";
import { TenantError } from "../errors.ts";
import { choosePython, type PythonChoice, PythonVersionError } from "./python-version.ts";

/**
 * Reads (never runs) the tenant's repository, only through src/infra/safe-read.ts (no symlinks, FIFOs, devices or
 * oversized files), to decide how to build and start it. The start command comes from `Procfile` (`web:`) or
 * `[tool.tussilago] web = "…"` in pyproject.toml; it runs inside the tenant's own sandbox, but is still bounded to
 * one printable line so it cannot smuggle anything into argv or logs. The same holds for the `release:` command (run
 * once per deployment before the new release starts, docs/python-apps.md), every other process type (`worker:`,
 * or `[tool.tussilago.processes]`, each its own containers) and `[tool.tussilago] build`, run in the build sandbox
 * after the install. The Python version comes from python-version.ts.
 */
export type Installer = "uv-lock" | "requirements" | "pyproject";

export interface BuildPlan {
  installer: Installer;
  startCommand: string;
  releaseCommand: string | undefined;
  /** The other process types (`worker`, `beat`, …) → command; each runs as its own containers, never routed. */
  processes: Record<string, string>;
  buildCommand: string | undefined;
  python: PythonChoice;
}

/** The versions on offer (version → base image) and the one an app gets when it names none. */
export interface PythonOffer {
  images: Readonly<Record<string, string>>;
  defaultVersion: string;
}

const START_COMMAND = /^[\x20-\x7e]{1,1000}$/;

const KIB = 1024;
const MIB = 1024 * KIB;
/**
 * Caps for the files read on the host (docs/security.md, "Repository files"). uv.lock and requirements.txt are only
 * checked to be regular files here: the build reads them inside the sandbox.
 */
export const REPO_FILE_LIMITS = {
  Procfile: 256 * KIB,
  "pyproject.toml": MIB,
  "requirements.txt": MIB,
  "uv.lock": 16 * MIB,
  ".python-version": 4 * KIB,
} as const;

async function scan(srcDir: string) {
  const L = REPO_FILE_LIMITS;
  const [lock, requirements, pyproject, procfile, pythonVersionFile] = await Promise.all([
    repoFileExists(srcDir, "uv.lock", L["uv.lock"]),
    repoFileExists(srcDir, "requirements.txt", L["requirements.txt"]),
    readRepoFile(srcDir, "pyproject.toml", L["pyproject.toml"]),
    readRepoFile(srcDir, "Procfile", L.Procfile),
    readRepoFile(srcDir, ".python-version", L[".python-version"]),
  ]);
  return { lock, requirements, pyproject, procfile, pythonVersionFile };
}

/**
 * A process type's name becomes part of container names and labels (settings.ts `names.process`): lowercase
 * letters, digits and underscores, so `<type>-<index>` can never be read two ways.
 */
export const PROCESS_TYPE = /^[a-z][a-z0-9_]{0,29}$/;
/** Process types besides web and release a release may declare. */
export const MAX_PROCESS_TYPES = 10;
/** Names the pipeline gives a meaning of its own; never a background process. */
const SPECIAL = new Set(["web", "release", "build"]);

/**
 * Every other process type of a Procfile (`worker: celery -A shop worker`), first line per type wins; blank lines,
 * `#` comments and lines without `name:` are ignored as before. A name the platform cannot carry is the tenant's to fix.
 */
export function procfileProcesses(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split(/\r?\n/)) {
    const m = /^([A-Za-z0-9_.-]+):\s*(.*?)\s*$/.exec(line);
    if (!m?.[1] || SPECIAL.has(m[1])) continue;
    addProcess(out, m[1], m[2] ?? "", "the Procfile");
  }
  return out;
}

/** `[tool.tussilago.processes]` → `worker = "…"` (one-line TOML strings, as for `web`). */
export function pyprojectProcesses(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  let inSection = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("[")) {
      inSection = line === "[tool.tussilago.processes]";
      continue;
    }
    if (!inSection || line === "" || line.startsWith("#")) continue;
    const m = /^([A-Za-z0-9_.-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$/.exec(line);
    if (!m?.[1]) throw new TenantError("build", '[tool.tussilago.processes] takes lines of the form name = "command"');
    if (SPECIAL.has(m[1])) {
      throw new TenantError("build", `[tool.tussilago.processes] cannot declare "${m[1]}"; set it in [tool.tussilago]`);
    }
    addProcess(
      out,
      m[1],
      m[2] !== undefined ? (JSON.parse(`"${m[2]}"`) as string) : (m[3] ?? ""),
      "[tool.tussilago.processes]",
    );
  }
  return out;
}

function addProcess(out: Record<string, string>, name: string, command: string, where: string): void {
  if (!PROCESS_TYPE.test(name)) {
    throw new TenantError(
      "build",
      `process type "${name.slice(0, 40)}" in ${where}: names are lowercase letters, digits and underscores (at most 30, starting with a letter)`,
    );
  }
  if (Object.hasOwn(out, name)) return;
  if (command === "") throw new TenantError("build", `process type "${name}" in ${where} has no command`);
  out[name] = command;
}

/** `name: command` (a type made of lowercase letters; web and release are the ones read by name). */
const PROCFILE_LINE = /^([a-z]+):\s*(.+?)\s*$/;

/** The command of one Procfile process type (`web`, `release`); the first line for it wins. */
export function procfileCommand(text: string, type: "web" | "release"): string | undefined {
  for (const line of text.split(/\r?\n/)) {
    const m = PROCFILE_LINE.exec(line);
    if (m?.[1] === type && m[2]) return m[2];
  }
  return undefined;
}

export function procfileWeb(text: string): string | undefined {
  return procfileCommand(text, "web");
}

export function pyprojectWeb(text: string): string | undefined {
  return pyprojectCommand(text, "web");
}

/** `key = "basic string"` or `key = 'literal string'`, an optional comment after it. */
const PYPROJECT_STRING = /^([a-z]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$/;

/**
 * `[tool.tussilago]` → `web = "…"`, `release = "…"` or `build = "…"` (a basic or literal TOML string on one line);
 * the rest of TOML is not needed.
 */
export function pyprojectCommand(text: string, key: "web" | "release" | "build"): string | undefined {
  let inSection = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("[")) {
      inSection = line === "[tool.tussilago]";
      continue;
    }
    if (!inSection) continue;
    const m = PYPROJECT_STRING.exec(line);
    if (m?.[1] === key) return m[2] !== undefined ? JSON.parse(`"${m[2]}"`) : m[3];
  }
  return undefined;
}

function oneLine(command: string | undefined, what: string): string | undefined {
  if (command !== undefined && !START_COMMAND.test(command)) {
    throw new TenantError("build", `the ${what} command must be one line of printable ASCII`);
  }
  return command;
}

const DEFAULT_OFFER: PythonOffer = { images: DEFAULT_PYTHON_IMAGES, defaultVersion: DEFAULT_PYTHON };

export async function detectBuildPlan(srcDir: string, offer: PythonOffer = DEFAULT_OFFER): Promise<BuildPlan> {
  let files: Awaited<ReturnType<typeof scan>>;
  try {
    files = await scan(srcDir);
  } catch (err) {
    // A symlink, FIFO, device or oversized file in the repository: the tenant's to fix, never retried.
    if (err instanceof RepoFileError) throw new TenantError("build", err.message);
    throw err;
  }
  const { lock, requirements, pyproject, procfile, pythonVersionFile } = files;
  let python: PythonChoice;
  try {
    python = choosePython({ pythonVersionFile, pyproject }, offer.images, offer.defaultVersion);
  } catch (err) {
    if (err instanceof PythonVersionError) throw new TenantError("build", err.message);
    throw err;
  }
  let installer: Installer;
  if (lock && pyproject !== undefined) installer = "uv-lock";
  else if (requirements) installer = "requirements";
  else if (pyproject !== undefined) installer = "pyproject";
  else throw new TenantError("build", "no uv.lock, requirements.txt or pyproject.toml at the repository root");

  const start =
    (procfile !== undefined ? procfileWeb(procfile) : undefined) ?? (pyproject ? pyprojectWeb(pyproject) : undefined);
  if (start === undefined) {
    throw new TenantError(
      "build",
      'no start command: add a Procfile with a "web:" line, or web = "…" under [tool.tussilago]',
    );
  }
  oneLine(start, "start");
  const releaseCommand = oneLine(
    (procfile !== undefined ? procfileCommand(procfile, "release") : undefined) ??
      (pyproject ? pyprojectCommand(pyproject, "release") : undefined),
    "release",
  );
  const buildCommand = oneLine(pyproject ? pyprojectCommand(pyproject, "build") : undefined, "build");
  // The Procfile's line for a type wins over pyproject's, as for web and release.
  const processes = {
    ...(pyproject ? pyprojectProcesses(pyproject) : {}),
    ...(procfile !== undefined ? procfileProcesses(procfile) : {}),
  };
  const types = Object.keys(processes);
  if (types.length > MAX_PROCESS_TYPES) {
    throw new TenantError(
      "build",
      `${types.length} process types besides web and release; at most ${MAX_PROCESS_TYPES}`,
    );
  }
  for (const [name, command] of Object.entries(processes)) oneLine(command, `"${name}" process`);
  return { installer, startCommand: start, releaseCommand, buildCommand, processes, python };
}

/**
 * Our own fixed build script per installer. Tenant text never goes into it: the app's `build` command is passed
 * as the script's first argument (`sh -c SCRIPT tussilago-build "$command"`) and run with the new venv on PATH.
 * The Python version is one of the `pythonImages` keys (digits and a dot), never tenant text.
 */
export function buildScript(installer: Installer, python?: string, withBuildCommand = false): string {
  if (python !== undefined && !/^3\.\d{1,2}$/.test(python)) throw new Error(`not a Python version: ${python}`);
  const pin = python !== undefined ? ` UV_PYTHON=${python}` : "";
  const common = `set -eu; export UV_PROJECT_ENVIRONMENT=/app/.venv UV_PYTHON_DOWNLOADS=never UV_PYTHON_PREFERENCE=only-system${pin}; uv --version;`;
  const install = (() => {
    switch (installer) {
      case "uv-lock":
        return `${common} uv sync --frozen --no-dev --no-install-project`;
      case "requirements":
        return `${common} uv venv /app/.venv && uv pip install --python /app/.venv/bin/python -r requirements.txt`;
      case "pyproject":
        return `${common} uv sync --no-dev --no-install-project`;
    }
  })();
  if (!withBuildCommand) return install;
  return `${install}; echo "build command: $1"; cd /app; PATH=/app/.venv/bin:$PATH VIRTUAL_ENV=/app/.venv /bin/sh -c "$1"`;
}
