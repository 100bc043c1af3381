import { createHash } from "node:crypto";
import type { BuildPlan, Installer } from "./detect.ts";

/**
 * The dependency layer of a release (docs/python-apps.md, "Dependency cache"). Most pushes change code, not
 * dependencies: the venv is then the same as the last build's, so it is built once per input and kept as an image of
 * its own (`names.depsImage`), and a push whose inputs are unchanged gets its release image as that layer + a copy of
 * the code, without running the installer at all. The inputs are exactly what the install reads: our build script
 * (installer, Python version, uv settings), the base image by ID (a rebuilt base image is another interpreter), and
 * the dependency files. The install runs in a directory holding only those files, so nothing else of the repository
 * can leak into the layer and a stale layer can only come from a hash collision.
 *
 * Pure: reading the files (through src/infra/safe-read.ts) and running the build are the build stage's.
 */

/** Bump when the layout of the dependency layer changes: every app then installs afresh once. */
const FORMAT = "tussilago-deps-v1";

/** The files each installer reads, the only ones the dependency build sees. */
export const DEPS_FILES: Readonly<Record<Installer, readonly string[]>> = {
  "uv-lock": ["pyproject.toml", "uv.lock"],
  pyproject: ["pyproject.toml"],
  requirements: ["requirements.txt"],
};

export interface DepsKeyInput {
  /** Our fixed build script for the installer and Python version (detect.ts `buildScript`). */
  script: string;
  /** The base image's ID (not its name: the name stays when an operator rebuilds the image). */
  baseImageId: string;
  pythonVersion: string;
  /** File name → content, for the installer's DEPS_FILES (a missing one is absent). */
  files: Readonly<Record<string, string>>;
}

/** Hex digest of everything the install depends on; equal keys mean an equal venv. */
export function depsCacheKey(input: DepsKeyInput): string {
  const h = createHash("sha256");
  // Length-prefixed fields: no two different inputs can concatenate to the same bytes.
  const field = (name: string, value: string) => {
    const bytes = Buffer.from(value, "utf8");
    h.update(`${name}\0${bytes.length}\0`);
    h.update(bytes);
  };
  field("format", FORMAT);
  field("script", input.script);
  field("base", input.baseImageId);
  field("python", input.pythonVersion);
  for (const name of Object.keys(input.files).sort()) field(`file:${name}`, input.files[name] ?? "");
  return h.digest("hex");
}

export type DepsCacheDecision = { cacheable: true } | { cacheable: false; why: string };

/**
 * Whether the dependencies can be installed from their files alone (and so be cached): not when the install needs
 * the rest of the repository. Then the whole checkout is built as before, every time:
 * - an app `build` command (it runs with the code, after the install, and may write anywhere in /app);
 * - local packages: path, directory or editable sources other than the project itself, workspace members (uv.lock
 *   records each package's source; without a lock, any `[tool.uv]` setting counts as one);
 * - requirements.txt (it may name other files, local paths and unpinned versions line by line).
 */
export function depsCacheDecision(
  plan: Pick<BuildPlan, "installer" | "buildCommand">,
  files: Readonly<Record<string, string>>,
): DepsCacheDecision {
  if (plan.buildCommand !== undefined) return { cacheable: false, why: "the app has a build command" };
  if (plan.installer === "requirements") return { cacheable: false, why: "requirements.txt is installed as is" };
  const pyproject = files["pyproject.toml"] ?? "";
  if (/\bfile:/.test(pyproject)) return { cacheable: false, why: "pyproject.toml names local packages" };
  // Without a lock only pyproject.toml says where packages come from, in any TOML spelling of [tool.uv] sources or
  // workspace: any uv setting keeps such an app on the full build.
  if (plan.installer === "pyproject" && /\btool\.uv\b/.test(pyproject)) {
    return { cacheable: false, why: "pyproject.toml has uv settings and no uv.lock" };
  }
  if (plan.installer === "uv-lock") {
    const lock = files["uv.lock"] ?? "";
    // uv.lock records where each package comes from; local ones other than the root project (".") need the tree.
    for (const m of lock.matchAll(/\bsource\s*=\s*\{\s*(editable|virtual|path|directory)\s*=\s*"([^"]*)"/g)) {
      if (m[2] !== ".") return { cacheable: false, why: "uv.lock names local packages" };
    }
  }
  return { cacheable: true };
}
