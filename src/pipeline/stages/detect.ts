import { RepoFileError, readRepoFile, repoFileExists } from "../../infra/safe-read.ts";
import { TenantError } from "../errors.ts";

/**
 * Reads (never runs) the tenant's repository, only through src/infra/safe-read.ts (no symlinks, FIFOs, devices or
 * oversized files), to decide how to build and start it. The start command comes from `Procfile` (`web:`) or
 * `[tool.tussilago] web = "…"` in pyproject.toml; it runs inside the tenant's own sandbox, but is still bounded to
 * one printable line so it cannot smuggle anything into argv or logs.
 */
export type Installer = "uv-lock" | "requirements" | "pyproject";

export interface BuildPlan {
  installer: Installer;
  startCommand: string;
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
} as const;

async function scan(srcDir: string) {
  const L = REPO_FILE_LIMITS;
  const [lock, requirements, pyproject, procfile] = await Promise.all([
    repoFileExists(srcDir, "uv.lock", L["uv.lock"]),
    repoFileExists(srcDir, "requirements.txt", L["requirements.txt"]),
    readRepoFile(srcDir, "pyproject.toml", L["pyproject.toml"]),
    readRepoFile(srcDir, "Procfile", L.Procfile),
  ]);
  return { lock, requirements, pyproject, procfile };
}

export function procfileWeb(text: string): string | undefined {
  for (const line of text.split(/\r?\n/)) {
    const m = /^web:\s*(.+?)\s*$/.exec(line);
    if (m?.[1]) return m[1];
  }
  return undefined;
}

/** `[tool.tussilago]` → `web = "…"` (a basic or literal TOML string on one line); the rest of TOML is not needed. */
export function pyprojectWeb(text: string): string | undefined {
  let inSection = false;
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.trim();
    if (line.startsWith("[")) {
      inSection = line === "[tool.tussilago]";
      continue;
    }
    if (!inSection) continue;
    const m = /^web\s*=\s*(?:"((?:[^"\\]|\\.)*)"|'([^']*)')\s*(?:#.*)?$/.exec(line);
    if (m) return m[1] !== undefined ? JSON.parse(`"${m[1]}"`) : m[2];
  }
  return undefined;
}

export async function detectBuildPlan(srcDir: string): Promise<BuildPlan> {
  let files: Awaited<ReturnType<typeof scan>>;
  try {
    files = await scan(srcDir);
  } catch (err) {
    // A symlink, FIFO, device or oversized file in the repository: the tenant's to fix, never retried.
    if (err instanceof RepoFileError) throw new TenantError("build", err.message);
    throw err;
  }
  const { lock, requirements, pyproject, procfile } = files;
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
  if (!START_COMMAND.test(start))
    throw new TenantError("build", "the start command must be one line of printable ASCII");
  return { installer, startCommand: start };
}

/** Our own fixed build script per installer (tenant text never goes into it). */
export function buildScript(installer: Installer): string {
  const common =
    "set -eu; export UV_PROJECT_ENVIRONMENT=/app/.venv UV_PYTHON_DOWNLOADS=never UV_PYTHON_PREFERENCE=only-system; uv --version;";
  switch (installer) {
    case "uv-lock":
      return `${common} uv sync --frozen --no-dev --no-install-project`;
    case "requirements":
      return `${common} uv venv /app/.venv && uv pip install --python /app/.venv/bin/python -r requirements.txt`;
    case "pyproject":
      return `${common} uv sync --no-dev --no-install-project`;
  }
}
