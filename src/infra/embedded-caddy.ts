import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, request } from "undici";
import {
  assertSocketPath,
  assertSpawned,
  EmbeddedServiceError,
  type EmbeddedServiceOptions,
  privateDir,
  waitUntilReady,
} from "./wait-for-socket.ts";

export interface EmbeddedCaddy {
  /** Absolute path of the admin API's unix socket (the form CADDY_ADMIN accepts). */
  adminSocket: string;
  pid: number | undefined;
  exited: Promise<{ exitCode: number | undefined; signal: string | undefined }>;
  stop(): Promise<void>;
}

const SERVICE = "embedded caddy";
const REMEDY = "install caddy or set CADDY_ADMIN";

/**
 * Starting config: admin API on a unix socket only (no TCP :2019, so no clash with a system Caddy and nothing a
 * tenant container can reach) and an empty HTTP app the route adapter fills in. `persist: false` because the bot's
 * database is the source of truth and the reconcile pass rebuilds routes; an autosave would only go stale.
 */
export function caddyInitConfig(adminSocket: string): object {
  return {
    admin: { listen: `unix/${adminSocket}`, config: { persist: false } },
    apps: { http: { servers: {} } },
  };
}

/**
 * GET /config/ over the admin socket. Caddy checks the Host header against the listen address; for a unix socket
 * the only accepted value is the empty string (anything else is 403 "host not allowed").
 */
export async function probeCaddyAdmin(adminSocket: string, timeoutMs = 1_000): Promise<boolean> {
  const agent = new Agent({ connect: { socketPath: adminSocket, timeout: timeoutMs } });
  try {
    const res = await request("http://localhost/config/", {
      dispatcher: agent,
      headers: { host: "" },
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
    });
    await res.body.dump();
    return res.statusCode === 200;
  } catch {
    return false;
  } finally {
    await agent.close();
  }
}

export async function startEmbeddedCaddy(options: EmbeddedServiceOptions): Promise<EmbeddedCaddy> {
  const { runner, log } = options;
  const binary = options.binary ?? "caddy";
  const dir = join(options.dataDir, "caddy");
  const adminSocket = join(dir, "admin.sock");
  const configPath = join(dir, "init.json");
  assertSocketPath(SERVICE, adminSocket);
  await privateDir(dir);

  // Caddy replaces an existing socket file on start, so a live one means a second bot on this data dir.
  if (await probeCaddyAdmin(adminSocket)) {
    throw new EmbeddedServiceError(
      SERVICE,
      "in_use",
      `${SERVICE}: ${adminSocket} already answers; is another bot using this data dir?`,
    );
  }
  await writeFile(configPath, `${JSON.stringify(caddyInitConfig(adminSocket))}\n`, { mode: 0o600 });
  await chmod(configPath, 0o600);

  const proc = runner.spawn(binary, ["run", "--config", configPath], {
    cwd: dir,
    // Certificates, locks and autosaves go under the data dir, never into the operator's $HOME.
    env: { XDG_DATA_HOME: join(dir, "data"), XDG_CONFIG_HOME: join(dir, "config") },
  });
  await assertSpawned(SERVICE, binary, proc, REMEDY);
  await waitUntilReady({
    service: SERVICE,
    proc,
    probe: () => probeCaddyAdmin(adminSocket),
    timeoutMs: options.readyTimeoutMs ?? 10_000,
  });

  let stopping = false;
  void proc.exited.then((e) => {
    if (!stopping) log.error({ adminSocket, ...e }, "embedded caddy exited unexpectedly");
  });
  log.info({ adminSocket, pid: proc.pid }, "embedded caddy started");

  return {
    adminSocket,
    pid: proc.pid,
    exited: proc.exited,
    async stop() {
      stopping = true;
      await proc.stop();
      log.info({ adminSocket }, "embedded caddy stopped");
    },
  };
}
