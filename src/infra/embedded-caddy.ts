import { chmod, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { Agent, request } from "undici";
import { adoptOrStart, type DetachedService, type DetachedServiceSpec, recordedInstance } from "./detached-service.ts";
import { assertSocketPath, type EmbeddedServiceOptions, privateDir } from "./wait-for-socket.ts";

export interface EmbeddedCaddy extends DetachedService {
  /** Absolute path of the admin API's unix socket (the form CADDY_ADMIN accepts). */
  adminSocket: string;
}

const SERVICE = "embedded caddy";
const REMEDY = "install caddy or set CADDY_ADMIN";

/**
 * Starting config: admin API on a unix socket only (no TCP :2019, so no clash with a system Caddy and nothing a
 * tenant container can reach) and an empty HTTP app the route adapter fills in. `persist: false` because the bot's
 * database is the source of truth and the reconcile pass rebuilds routes; an autosave would only go stale.
 */
export function caddyInitConfig(adminSocket: string, logFile?: string): object {
  return {
    admin: { listen: `unix/${adminSocket}`, config: { persist: false } },
    // Caddy outlives the bot, so its log cannot go through the bot's logger: a file it rolls itself (10 MB × 5).
    ...(logFile !== undefined
      ? {
          logging: {
            logs: { default: { writer: { output: "file", filename: logFile, roll_size_mb: 10, roll_keep: 5 } } },
          },
        }
      : {}),
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

/** Where this data dir's Caddy lives; `stop-proxy` and the supervisor use the same spec. */
export function caddySpec(options: Pick<EmbeddedServiceOptions, "dataDir" | "binary" | "readyTimeoutMs">) {
  const dir = join(options.dataDir, "caddy");
  const adminSocket = join(dir, "admin.sock");
  const configPath = join(dir, "init.json");
  const spec: DetachedServiceSpec = {
    service: SERVICE,
    dir,
    name: "caddy",
    binary: options.binary ?? "caddy",
    args: ["run", "--config", configPath],
    // Certificates, locks and autosaves go under the data dir, never into the operator's $HOME.
    env: { XDG_DATA_HOME: join(dir, "data"), XDG_CONFIG_HOME: join(dir, "config") },
    marker: configPath,
    probe: () => probeCaddyAdmin(adminSocket),
    remedy: REMEDY,
    stopGraceMs: 5_000,
    readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
  };
  return { spec, adminSocket, configPath };
}

/**
 * Adopts this data dir's running Caddy or starts one, detached: it keeps serving the apps while the bot is down.
 * A fresh Caddy starts with no routes; the bot's reconcile pass puts them back from the database.
 */
export async function startEmbeddedCaddy(options: EmbeddedServiceOptions): Promise<EmbeddedCaddy> {
  const { spec, adminSocket, configPath } = caddySpec(options);
  assertSocketPath(SERVICE, adminSocket);
  await privateDir(spec.dir);
  if (recordedInstance(spec) === undefined) {
    // Rewritten only when no instance of ours runs: the adopted one was started with this file.
    await writeFile(configPath, `${JSON.stringify(caddyInitConfig(adminSocket, join(spec.dir, "server.log")))}\n`, {
      mode: 0o600,
    });
    await chmod(configPath, 0o600);
  }
  const service = await adoptOrStart(spec, options.runner, options.log);
  return Object.assign(service, { adminSocket });
}
