import { connect } from "node:net";
import { join } from "node:path";
import { adoptOrStart, type DetachedService, type DetachedServiceSpec } from "./detached-service.ts";
import { assertSocketPath, type EmbeddedServiceOptions, privateDir } from "./wait-for-socket.ts";

export interface EmbeddedRedis extends DetachedService {
  /** `unix://<socketPath>`, for display and for REDIS_URL-style configuration. */
  url: string;
  socketPath: string;
  /**
   * What to hand to ioredis: `new Redis({ ...connection })`. ioredis 6 does not understand `unix://` URLs (it
   * parses `unix:///a/b.sock` as host "unix", path "///a/b.sock"), so never pass `url` to it.
   */
  connection: { path: string };
}

const SERVICE = "embedded redis";
const REMEDY = "install redis-server or set REDIS_URL";
/** Redis rewrites and fsyncs the AOF on SIGTERM; a big data set needs more than the runner's default 5 s. */
const STOP_GRACE_MS = 15_000;

/** One RESP PING over the socket; `-LOADING` while the AOF is replayed counts as not ready yet. */
export function pingRedis(socketPath: string, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ path: socketPath });
    let reply = "";
    const finish = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.on("connect", () => socket.write("*1\r\n$4\r\nPING\r\n"));
    socket.on("data", (chunk: Buffer) => {
      reply += chunk.toString("utf8");
      if (reply.includes("\r\n")) finish(reply.startsWith("+PONG"));
    });
    socket.on("error", () => finish(false));
  });
}

export function redisArgs(dir: string, socketPath: string): string[] {
  return [
    // Port 0 turns TCP off: only the unix socket (owner-only) reaches this Redis, never a tenant container.
    "--port",
    "0",
    "--unixsocket",
    socketPath,
    "--unixsocketperm",
    "700",
    "--dir",
    dir,
    // BullMQ keeps job state here: AOF so queued deploys survive a restart of the bot.
    "--appendonly",
    "yes",
    "--appendfsync",
    "everysec",
    "--save",
    "",
    "--daemonize",
    "no",
  ];
}

/** Where this data dir's Redis lives; `stop-proxy` and the supervisor use the same spec. */
export function redisSpec(options: Pick<EmbeddedServiceOptions, "dataDir" | "binary" | "readyTimeoutMs">) {
  const dir = join(options.dataDir, "redis");
  const socketPath = join(dir, "redis.sock");
  const spec: DetachedServiceSpec = {
    service: SERVICE,
    dir,
    name: "redis",
    binary: options.binary ?? "redis-server",
    args: redisArgs(dir, socketPath),
    // redis-server rewrites its command line to "redis-server unixsocket:<path>": the socket path stays in it.
    marker: socketPath,
    probe: () => pingRedis(socketPath),
    remedy: REMEDY,
    stopGraceMs: STOP_GRACE_MS,
    readyTimeoutMs: options.readyTimeoutMs ?? 10_000,
  };
  return { spec, socketPath };
}

/**
 * Adopts this data dir's running redis-server or starts one, detached: queued jobs and the bot's locks stay
 * available across a bot restart, and a restart does not cost an AOF replay.
 */
export async function startEmbeddedRedis(options: EmbeddedServiceOptions): Promise<EmbeddedRedis> {
  const { spec, socketPath } = redisSpec(options);
  assertSocketPath(SERVICE, socketPath);
  await privateDir(spec.dir);
  const service = await adoptOrStart(spec, options.runner, options.log);
  return Object.assign(service, {
    url: `unix://${socketPath}`,
    socketPath,
    connection: { path: socketPath },
  });
}
