import { statSync } from "node:fs";
import { join } from "node:path";
import { Agent, request } from "undici";
import { describe, expect } from "vitest";
import { startEmbeddedCaddy } from "../../src/infra/embedded-caddy.ts";
import { EmbeddedServiceError } from "../../src/infra/wait-for-socket.ts";
import { isAlive, PathRunner, test } from "../helpers/embedded.ts";
import { memoryLogger } from "../helpers/fixtures.ts";

// Real caddy: lives in the end-to-end suite because the default suite never talks HTTP to Caddy (vitest.config.ts).

describe("embedded caddy", () => {
  test("serves the admin API on its unix socket only, and stop() ends the process", async ({
    dataDir,
    runner,
    cleanups,
  }) => {
    const caddy = await startEmbeddedCaddy({ runner, dataDir, log: memoryLogger("silent").logger });
    cleanups.push(() => caddy.stop());
    expect(caddy.adminSocket).toBe(join(dataDir, "caddy", "admin.sock"));
    expect(statSync(join(dataDir, "caddy", "init.json")).mode & 0o777).toBe(0o600);

    const agent = new Agent({ connect: { socketPath: caddy.adminSocket } });
    const res = await request("http://localhost/config/", { dispatcher: agent, headers: { host: "" } });
    expect(res.statusCode).toBe(200);
    const config = (await res.body.json()) as { admin: { listen: string }; apps: { http: { servers: object } } };
    expect(config.admin.listen).toBe(`unix/${caddy.adminSocket}`);
    expect(config.apps.http.servers).toEqual({});
    await agent.close();

    expect(caddy.pid).toBeDefined();
    await caddy.stop();
    const exit = await caddy.exited;
    expect(exit.exitCode).toBe(0);
    expect(isAlive(caddy.pid ?? -1)).toBe(false);
  });

  test("names the binary and the way out when caddy is not on PATH", async ({ dataDir, runner }) => {
    const noBinaries = new PathRunner(runner, join(dataDir, "empty-bin"));
    const err = await startEmbeddedCaddy({ runner: noBinaries, dataDir, log: memoryLogger("silent").logger }).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(EmbeddedServiceError);
    expect((err as EmbeddedServiceError).kind).toBe("binary_missing");
    expect((err as Error).message).toContain("install caddy or set CADDY_ADMIN");
  });
});
