import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { databasePath, openDb } from "../../src/db/client.ts";
import { createApp } from "../../src/domain/apps.ts";
import { recordAudit } from "../../src/domain/audit.ts";
import { ensureSlackUser } from "../../src/domain/users.ts";
import { tempDir } from "../helpers/fixtures.ts";

// The real CLI (`node src/cli.ts audit`) reading a temp data dir; no Redis needed, the bot may be down.

function run(dataDir: string, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ["src/cli.ts", "audit", ...args], {
      env: { PATH: process.env.PATH ?? "", HOME: dataDir, TUSSILAGO_DATA_DIR: dataDir },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on("data", (d: Buffer) => {
      stderr += d.toString();
    });
    child.on("exit", (code) => resolve({ code, stdout, stderr }));
  });
}

describe("tussilago audit", () => {
  it("prints the table, JSON lines, filters by app; unknown app exits 1, a bad --since exits 2", async ({
    onTestFinished,
  }) => {
    const dir = tempDir("tussilago-audit-");
    onTestFinished(dir.cleanup);
    const db = openDb(databasePath(dir.path));
    const shop = createApp(db, {
      slug: "shop",
      gitUrl: "https://git.example.com/shop.git",
      domain: "shop.example.com",
    });
    const blog = createApp(db, {
      slug: "blog",
      gitUrl: "https://git.example.com/blog.git",
      domain: "blog.example.com",
    });
    const alice = ensureSlackUser(db, { teamId: "T0TEAM", userId: "U0ALICE", displayName: "Alice" });
    recordAudit(db, {
      action: "deploy",
      outcome: "succeeded",
      actor: alice,
      appUuid: shop.uuid,
      details: { ref: "main" },
    });
    recordAudit(db, { action: "env.set", outcome: "denied", actor: alice, appUuid: blog.uuid, details: { key: "X" } });
    db.$client.close();

    const table = await run(dir.path, ["--since", "1h"]);
    expect(table).toMatchObject({ code: 0, stderr: "" });
    const lines = table.stdout.trimEnd().split("\n");
    expect(lines[0]).toMatch(/^TIME\s+ACTOR\s+ACTION\s+OUTCOME\s+APP\s+DETAILS$/);
    expect(lines.slice(1).map((l) => l.split(/\s{2,}/).slice(1))).toEqual([
      ["Alice (T0TEAM:U0ALICE)", "env.set", "denied", "blog", "key=X"],
      ["Alice (T0TEAM:U0ALICE)", "deploy", "succeeded", "shop", "ref=main"],
    ]);

    const json = await run(dir.path, ["--app", "shop", "--json"]);
    expect(json.code).toBe(0);
    const events = json.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l) as { action: string; app: string; uuid: string });
    expect(events.map((e) => [e.action, e.app])).toEqual([["deploy", "shop"]]);
    expect(events[0]?.uuid).toMatch(/^[0-9a-f-]{36}$/);

    expect(await run(dir.path, ["--app", "nope"])).toEqual({
      code: 1,
      stdout: "",
      stderr: "error: app nope not found\n",
    });
    const usage = await run(dir.path, ["--since", "forever"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toBe(
      'tussilago: --since "forever": use e.g. 30m, 1h or 7d\n' +
        "usage: tussilago audit [--app <app>] [--since 1h] [--limit 50] [--json]\n",
    );
  });
});
