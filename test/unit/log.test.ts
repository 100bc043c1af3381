import { describe, expect, it } from "vitest";
import { withContext } from "../../src/log.ts";
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
