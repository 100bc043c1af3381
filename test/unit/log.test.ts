import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { createLogger, stdoutDestination, withContext } from "../../src/log.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

describe("logger", () => {
  it("redacts secrets and tokens wherever the known keys appear", () => {
    const { logger, text } = memoryLogger();
    logger.info(
      {
        config: { secretKey: "s3cr3t-key-value", slack: { botToken: "xoxb-very-secret" } },
        token: "ghs_installation_token",
        headers: { authorization: "Bearer abc.def", "x-hub-signature-256": "sha256=deadbeef" },
        password: "hunter2",
      },
      "boot",
    );
    const out = text();
    for (const secret of [
      "s3cr3t-key-value",
      "ghs_installation_token",
      "Bearer abc.def",
      "sha256=deadbeef",
      "hunter2",
    ]) {
      expect(out).not.toContain(secret);
    }
    expect(out).toContain("[redacted]");
  });

  it("child loggers carry tenant, app and deployment ids", () => {
    const { logger, lines } = memoryLogger();
    withContext(logger, { tenantId: "t-uuid", appId: "a-uuid", deploymentId: "d-uuid" }).info("stage started");
    expect(lines()[0]).toMatchObject({
      tenantId: "t-uuid",
      appId: "a-uuid",
      deploymentId: "d-uuid",
      msg: "stage started",
    });
  });
});

describe("the bot's log destination", () => {
  it("has every line in the file, in order, as soon as it is logged (no buffer an exit could reorder or lose)", () => {
    const dir = mkdtempSync(join(tmpdir(), "tussilago-log-"));
    const file = join(dir, "out.log");
    const fd = openSync(file, "w");
    try {
      const log = createLogger({ level: "info", destination: stdoutDestination(fd) });
      for (let i = 0; i < 2_000; i++) log.info({ step: i }, "stopped");
      const steps = readFileSync(file, "utf8")
        .trim()
        .split("\n")
        .map((l) => (JSON.parse(l) as { step: number }).step);
      expect(steps).toEqual(Array.from({ length: 2_000 }, (_, i) => i));
    } finally {
      closeSync(fd);
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
