import { describe, expect, it } from "vitest";
import { dataAccessProblems } from "../../scripts/check-imports.ts";

/** A command as it should be: domain functions and schema types only. */
const clean = [
  'import type { Db } from "../src/db/client.ts";',
  'import type { Role } from "../src/db/schema.ts";',
  'import { type DeploymentStatus } from "../src/db/schema.ts";',
  'import { getAppBySlug } from "../src/domain/apps.ts";',
  'export type { StageTiming } from "../src/db/schema.ts";',
  'type Row = import("../src/db/schema.ts").AppRow;',
].join("\n");

describe("dataAccessProblems", () => {
  it("passes a file that reaches the database only through src/domain/ (schema types allowed)", () => {
    expect(dataAccessProblems("commands/apps.ts", clean)).toEqual([]);
  });

  it("fails on drizzle-orm and its subpaths, one line per import with its line number", () => {
    const text = `${clean}\nimport { eq } from "drizzle-orm";\nimport type { SQL } from "drizzle-orm/sqlite-core";`;
    expect(dataAccessProblems("commands/apps.ts", text)).toEqual([
      'commands/apps.ts:7: imports "drizzle-orm" outside src/domain/ and src/db/ (call a src/domain/ function)',
      'commands/apps.ts:8: imports "drizzle-orm/sqlite-core" outside src/domain/ and src/db/ (call a src/domain/ function)',
    ]);
  });

  it("fails on a table object of the schema, in every form that loads it", () => {
    const planted = [
      'import { apps } from "../db/schema.ts";',
      'import { type Role, users } from "../db/schema.ts";',
      'import * as schema from "../db/schema.ts";',
      'export { deployments } from "../db/schema.ts";',
      'const m = await import("../db/schema.ts");',
    ];
    const problems = dataAccessProblems("src/reporters/notices.ts", planted.join("\n"));
    expect(problems.map((line) => line.split(": ")[0])).toEqual(
      [1, 2, 3, 4, 5].map((n) => `src/reporters/notices.ts:${n}`),
    );
    expect(problems[0]).toContain("imports values of src/db/schema.ts");
  });

  it("lets src/domain/ and src/db/ query freely", () => {
    const text = 'import { eq } from "drizzle-orm";\nimport { apps } from "../db/schema.ts";';
    expect(dataAccessProblems("src/domain/apps.ts", text)).toEqual([]);
    expect(dataAccessProblems("src/db/client.ts", text)).toEqual([]);
    expect(dataAccessProblems("src/pipeline/reconcile.ts", text)).toHaveLength(2);
  });
});
