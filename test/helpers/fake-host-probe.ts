import type { HostProbe, HttpAnswer, HttpAsk, RunOutcome } from "../../src/infra/host-probe.ts";
import type { RedisTarget } from "../../src/infra/redis.ts";

type RunHandler = (file: string, args: readonly string[]) => RunOutcome;

export const exited = (exitCode: number, stderrTail = ""): RunOutcome => ({
  ok: false,
  kind: "exit",
  exitCode,
  stderrTail,
});
export const ok = (stdout = ""): RunOutcome => ({ ok: true, stdout, stderr: "" });

/**
 * A machine described by data: the executables on its PATH, what each command answers, its files, its disk, and
 * the HTTP and Redis answers. The defaults describe a healthy host with the bot running; tests change one thing.
 */
export class FakeHostProbe implements HostProbe {
  node = "24.1.0";
  /** name → absolute path; a tool missing from here is not on PATH. */
  tools = new Map<string, string>([
    ["podman", "/usr/bin/podman"],
    ["runsc", "/usr/bin/runsc"],
    ["nft", "/usr/sbin/nft"],
    ["caddy", "/usr/bin/caddy"],
    ["redis-server", "/usr/bin/redis-server"],
  ]);
  paths = new Set<string>(["/usr/bin/runsc", "/data/caddy/admin.sock", "/data/redis/redis.sock"]);
  files = new Map<string, string>([["/proc/sys/net/ipv4/tcp_migrate_req", "1\n"]]);
  disk: { freeBytes: number; totalBytes: number; measured: string } | undefined = {
    freeBytes: 50 * 1024 ** 3,
    totalBytes: 100 * 1024 ** 3,
    measured: "/data",
  };
  /** Per command; the default answers like a healthy host where netstack fails (this kernel). */
  onRun: RunHandler = (file, args) => {
    if (args[0] === "--version")
      return ok(file.endsWith("runsc") ? "runsc version 0.0~20221219.0\n" : "podman version 4.3.1\n");
    if (args.includes("--runtime-flag=network=sandbox")) {
      return exited(
        126,
        "starting container: setting up network: creating interfaces from net namespace: cannot run with network enabled in root network namespace\nError: `/usr/bin/runsc --network=sandbox start abc` failed: exit status 128",
      );
    }
    return ok();
  };
  onHttp: (ask: HttpAsk) => HttpAnswer | Error = () => answer(200, "{}");
  onRedis: (target: RedisTarget, commands: readonly (readonly string[])[]) => unknown[] | Error = () => [
    "# Persistence\r\naof_enabled:1\r\n",
    ["save", ""],
    ["maxmemory-policy", "noeviction"],
  ];
  readonly runs: Array<{ file: string; args: readonly string[]; timeoutMs: number }> = [];
  readonly asks: HttpAsk[] = [];

  nodeVersion(): string {
    return this.node;
  }
  async which(name: string): Promise<string | undefined> {
    return this.tools.get(name);
  }
  async exists(path: string): Promise<boolean> {
    return this.paths.has(path);
  }
  async run(file: string, args: readonly string[], timeoutMs: number): Promise<RunOutcome> {
    this.runs.push({ file, args, timeoutMs });
    return this.onRun(file, args);
  }
  async readFile(path: string): Promise<string | undefined> {
    return this.files.get(path);
  }
  async diskSpace(): Promise<{ freeBytes: number; totalBytes: number; measured: string } | undefined> {
    return this.disk;
  }
  async http(ask: HttpAsk): Promise<HttpAnswer> {
    this.asks.push(ask);
    const a = this.onHttp(ask);
    if (a instanceof Error) throw a;
    return a;
  }
  async redis(target: RedisTarget, commands: readonly (readonly string[])[]): Promise<unknown[]> {
    const r = this.onRedis(target, commands);
    if (r instanceof Error) throw r;
    return r;
  }
}

export function answer(status: number, body: string, headers: Record<string, string> = {}, receivedAt = 0): HttpAnswer {
  return { status, body, headers, receivedAt };
}
