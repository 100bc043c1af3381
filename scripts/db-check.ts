// Fails (exit 1) when src/db/schema.ts and the checked-in migrations in drizzle/ have drifted: it generates
// migrations into a scratch copy of drizzle/ and checks that drizzle-kit found nothing new to write.
import { cpSync, mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import { execa } from "execa";

const scratch = mkdtempSync(join(tmpdir(), "tussilago-db-check-"));
try {
  cpSync("drizzle", scratch, { recursive: true });
  const before = readdirSync(scratch).sort();
  await execa(
    "npx",
    [
      "drizzle-kit",
      "generate",
      "--dialect",
      "sqlite",
      "--schema",
      "./src/db/schema.ts",
      "--out",
      relative(process.cwd(), scratch),
      "--casing",
      "snake_case",
    ],
    { timeout: 120_000, stdio: "pipe" },
  );
  // drizzle-kit prefixes --out with "./", so it must be relative; and it can exit 0 after printing an error,
  // so a missing snapshot counts as a failure too.
  const after = readdirSync(scratch).sort();
  if (!readdirSync(join(scratch, "meta")).some((f) => f.endsWith("_snapshot.json"))) {
    throw new Error("db:check: drizzle-kit wrote no snapshot; check its output above");
  }
  const added = after.filter((f) => !before.includes(f));
  if (added.length > 0) {
    process.stderr.write(
      `db:check: src/db/schema.ts has changes without a migration (drizzle-kit would add ${added.join(", ")}). Run \`npm run db:generate\` and commit drizzle/.\n`,
    );
    process.exitCode = 1;
  } else {
    process.stdout.write("db:check: schema and migrations agree\n");
  }
} finally {
  rmSync(scratch, { recursive: true, force: true });
}
