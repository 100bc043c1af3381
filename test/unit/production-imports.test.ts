import { readdirSync, readFileSync } from "node:fs";
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

// Test doubles (test/helpers/fake-*.ts) and other test code must never ship in, or be reached from, the production
// entry points: this scans every production module's relative imports, static and dynamic.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const productionDirs = ["src", "commands", "handlers"];
const forbidden = ["test", join("src", "testing")];

const specifierPattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\bimport\s+)["']([^"']+)["']/g;

/** Relative import specifiers of one module's source text. */
function relativeImports(source: string): string[] {
  return [...source.matchAll(specifierPattern)].map((m) => m[1] ?? "").filter((s) => s.startsWith("."));
}

/** The forbidden targets (repository-relative) that `file` imports. */
function forbiddenImports(file: string, source: string): string[] {
  return relativeImports(source)
    .map((specifier) => relative(root, resolve(dirname(file), specifier)))
    .filter((target) => forbidden.some((dir) => target === dir || target.startsWith(dir + sep)));
}

function productionFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((entry) => entry.isFile() && entry.name.endsWith(".ts"))
    .map((entry) => join(entry.parentPath, entry.name))
    .filter((file) => !relative(root, file).startsWith(join("src", "testing") + sep));
}

describe("production modules", () => {
  it("import nothing from test/ or src/testing/", () => {
    const files = productionDirs.flatMap((dir) => productionFiles(join(root, dir)));
    expect(files.length).toBeGreaterThan(50);
    const offenders = files.flatMap((file) =>
      forbiddenImports(file, readFileSync(file, "utf8")).map((target) => `${relative(root, file)} → ${target}`),
    );
    expect(offenders).toEqual([]);
  });

  it("hold no test doubles: fakes live in test/helpers/", () => {
    const fakes = productionDirs
      .flatMap((dir) => productionFiles(join(root, dir)))
      .filter((file) => /(^|[-.])fakes?([-.]|$)/i.test(basename(file)))
      .map((file) => relative(root, file));
    expect(fakes).toEqual([]);
  });

  it("the scan catches static, dynamic and side-effect imports of test code", () => {
    const file = join(root, "src", "bot.ts");
    const planted = [
      'import { FakeEngine } from "../test/helpers/fake-engine.ts";',
      'const m = await import("../test/helpers/fake-git.ts");',
      'import "./testing/setup.ts";',
      'import type { X } from "./infra/podman.ts";',
      'import { z } from "zod";',
    ].join("\n");
    expect(forbiddenImports(file, planted)).toEqual([
      join("test", "helpers", "fake-engine.ts"),
      join("test", "helpers", "fake-git.ts"),
      join("src", "testing", "setup.ts"),
    ]);
  });
});
