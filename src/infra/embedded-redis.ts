import { connect } from "node:net";
import { join } from "node:path";
import {
  assertSocketPath,
  assertSpawned,
  EmbeddedServiceError,
  type EmbeddedServiceOptions,
  privateDir,
  waitUntilReady,
} from "./wait-for-socket.ts";

export interface EmbeddedRedis {
  /** `unix://<socketPath>`, for display and for REDIS_URL-style configuration. */
  url: string;
  socketPath: string;
  /**
   * What to hand to ioredis: `new Redis({ ...connection })`. ioredis 6 does not understand `unix://` URLs (it
   * parses `unix:///a/b.sock` as host "unix", path "///a/b.sock"), so never pass `url` to it.
   */
  connection: { path: string };
  pid: number | undefined;
  /** Resolves when redis-server exits, whether through stop() or not. */
  exited: Promise<{ exitCode: number | undefined; signal: string | undefined }>;
  stop(): Promise<void>;
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

export async function startEmbeddedRedis(options: EmbeddedServiceOptions): Promise<EmbeddedRedis> {
  const { runner, log } = options;
  const binary = options.binary ?? "redis-server";
  const dir = join(options.dataDir, "redis");
  const socketPath = join(dir, "redis.sock");
  assertSocketPath(SERVICE, socketPath);
  await privateDir(dir);

  // redis-server unlinks an existing socket file before bind(), so a second bot on the same data dir would
  // silently steal the first one's socket: refuse instead. A stale file from a crash does not answer and is fine.
  if (await pingRedis(socketPath)) {
    throw new EmbeddedServiceError(
      SERVICE,
      "in_use",
      `${SERVICE}: ${socketPath} already answers; is another bot using this data dir?`,
    );
  }

  const proc = runner.spawn(binary, redisArgs(dir, socketPath), { cwd: dir });
  await assertSpawned(SERVICE, binary, proc, REMEDY);
  await waitUntilReady({
    service: SERVICE,
    proc,
    probe: () => pingRedis(socketPath),
    timeoutMs: options.readyTimeoutMs ?? 10_000,
  });

  let stopping = false;
  void proc.exited.then((e) => {
    if (!stopping) log.error({ socketPath, ...e }, "embedded redis exited unexpectedly");
  });
  log.info({ socketPath, pid: proc.pid }, "embedded redis started");

  return {
    url: `unix://${socketPath}`,
    socketPath,
    connection: { path: socketPath },
    pid: proc.pid,
    exited: proc.exited,
    async stop() {
      stopping = true;
      await proc.stop(STOP_GRACE_MS);
      log.info({ socketPath }, "embedded redis stopped");
    },
  };
}
