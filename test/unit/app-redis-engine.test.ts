import { readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { PodmanAppRedis } from "../../src/infra/app-redis.ts";
import { sha256Hex } from "../../src/infra/app-redis-args.ts";
import { PodmanEngine } from "../../src/infra/podman.ts";
import type { RunContainerSpec } from "../../src/infra/podman-args.ts";
import { CommandError, type LongRunning, type Runner, type RunResult } from "../../src/infra/runner.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";

const APP = "0b7c1a52-5c3e-4a4e-9d0f-6f1d2a3b4c5d";
const NET = `tsl-net-${APP}`;
const CONTAINER = `tsl-redis-${APP}`;
const PASSWORD = "a-password-that-must-never-reach-argv-0123456789";

type Reply = RunResult | CommandError;

/** Records argv; answers from (predicate, reply) rules, first match wins; unmatched calls succeed empty. */
class ScriptedRunner implements Runner {
  readonly calls: string[][] = [];
  readonly rules: Array<[(args: string[]) => boolean, Reply | (() => Reply)]> = [];

  on(match: (args: string[]) => boolean, reply: Reply | (() => Reply)): this {
    this.rules.push([match, reply]);
    return this;
  }

  async run(_file: string, args: readonly string[]): Promise<RunResult> {
    this.calls.push([...args]);
    const rule = this.rules.find(([m]) => m([...args]));
    const reply = rule ? (typeof rule[1] === "function" ? rule[1]() : rule[1]) : ok("");
    if (reply instanceof CommandError) throw reply;
    return reply;
  }

  spawn(): LongRunning {
    throw new Error("not used");
  }

  find(...words: string[]): string[][] {
    return this.calls.filter((args) => words.every((w) => args.includes(w)));
  }
}

const ok = (stdout: string): RunResult => ({ stdout, stderr: "", exitCode: 0, durationMs: 1 });
const exit1 = () => new CommandError("/usr/bin/podman", "exit", 1, "");
const noSuchContainer = () => new CommandError("/usr/bin/podman", "exit", 125, "Error: no such container");
const has =
  (...words: string[]) =>
  (args: string[]) =>
    words.every((w) => args.includes(w));

function servers(runner: ScriptedRunner, cniConfigDir?: string) {
  const dir = tempDir("tsl-app-redis-");
  const { logger, text } = memoryLogger("debug");
  const s = new PodmanAppRedis(runner, logger, {
    instance: "abc123",
    stateDir: dir.path,
    sleep: async () => {},
    cniConfigDir: cniConfigDir ?? join(dir.path, "no-cni"),
  });
  return { s, text, cleanup: dir.cleanup };
}

const spec = {
  appUuid: APP,
  tenantUuid: "11111111-2222-4333-8444-555555555555",
  password: PASSWORD,
  appMemoryMb: 256,
  appCpus: 0.5,
  policy: "noeviction" as const,
};

describe("PodmanAppRedis.ensure", () => {
  it("creates the internal network, the volume and the container; the password appears only hashed", async () => {
    const runner = new ScriptedRunner()
      .on(has("network", "exists"), exit1())
      .on(has("volume", "exists"), exit1())
      .on(has("network", "inspect"), ok("10.89.5.0/24 \n"))
      .on(has("container", "inspect"), noSuchContainer())
      .on(has("/usr/bin/redis-cli", "ping"), ok("NOAUTH Authentication required.\n"));
    const { s, text, cleanup } = servers(runner);
    try {
      expect(await s.ensure(spec)).toEqual({ host: "10.89.5.2", port: 6379, action: "created" });
      expect(runner.find("network", "create")[0]).toEqual(expect.arrayContaining(["--internal", "--disable-dns", NET]));
      expect(runner.find("volume", "create")[0]).toEqual(expect.arrayContaining(["o=uid=65534,gid=65534", CONTAINER]));
      const run = runner.find("run", "--detach")[0] ?? [];
      expect(run).toEqual(expect.arrayContaining(["--ip", "10.89.5.2", "--network", NET, `#${sha256Hex(PASSWORD)}`]));
      expect(run).toContain("--runtime-flag=oci-seccomp");
      for (const args of runner.calls) expect(args.join(" ")).not.toContain(PASSWORD);
      expect(text()).not.toContain(PASSWORD);
    } finally {
      cleanup();
    }
  });

  it("leaves a running server with the same configuration alone, and starts a stopped one with runsc's flags", async () => {
    const first = new ScriptedRunner()
      .on(has("network", "inspect"), ok("10.89.5.0/24\n"))
      .on(has("container", "inspect"), noSuchContainer())
      .on(has("/usr/bin/redis-cli"), ok("NOAUTH\n"));
    const { s, cleanup } = servers(first);
    try {
      await s.ensure(spec);
      const digest = (first.find("run", "--detach")[0] ?? [])
        .find((a) => a.startsWith("io.tussilago.redis-config="))
        ?.split("=")[1];
      expect(digest).toMatch(/^[0-9a-f]{32}$/);

      let state = `true\t${digest}`;
      const again = new ScriptedRunner()
        .on(has("network", "inspect"), ok("10.89.5.0/24\n"))
        .on(has("container", "inspect"), () => ok(state))
        .on(has("/usr/bin/redis-cli"), ok("NOAUTH\n"));
      const { s: s2, cleanup: c2 } = servers(again);
      try {
        expect((await s2.ensure(spec)).action).toBe("none");
        expect(again.find("run")).toEqual([]);
        state = `false\t${digest}`;
        expect((await s2.ensure(spec)).action).toBe("started");
        const start = again.find("start")[0] ?? [];
        expect(start).toEqual(expect.arrayContaining(["--runtime-flag=network=host", "start", CONTAINER]));
        // A new password (rotate) or size means a new container on the same volume.
        state = `true\t${digest}`;
        expect((await s2.ensure({ ...spec, password: "another" })).action).toBe("created");
        expect(again.find("rm", "--force", CONTAINER)).toHaveLength(1);
      } finally {
        c2();
      }
    } finally {
      cleanup();
    }
  });

  it("recreates a lost network in the subnet of the address REDIS_URL already names", async () => {
    const runner = new ScriptedRunner()
      .on(has("network", "exists"), exit1())
      .on(has("network", "inspect"), ok("10.89.7.0/24\n"))
      .on(has("container", "inspect"), noSuchContainer())
      .on(has("/usr/bin/redis-cli"), ok("NOAUTH\n"));
    const { s, cleanup } = servers(runner);
    try {
      expect((await s.ensure({ ...spec, knownAddress: "10.89.7.2" })).host).toBe("10.89.7.2");
      expect(runner.find("network", "create")[0]).toEqual(expect.arrayContaining(["--subnet", "10.89.7.0/24"]));
    } finally {
      cleanup();
    }
  });
});

describe("PodmanAppRedis.ensure and CNI port forwarding", () => {
  const conflist = {
    cniVersion: "0.4.0",
    name: NET,
    plugins: [
      { type: "bridge", isGateway: false },
      { type: "portmap", capabilities: { portMappings: true } },
      { type: "firewall" },
    ],
  };
  const runner = () =>
    new ScriptedRunner()
      .on(has("network", "inspect"), ok("10.89.5.0/24\n"))
      .on(has("container", "inspect"), noSuchContainer())
      .on(has("/usr/bin/redis-cli"), ok("NOAUTH\n"));

  it("takes the portmap plugin out of the app network's conflist (a network of an older version too), atomically", async () => {
    const cni = tempDir("tsl-cni-");
    const path = join(cni.path, `${NET}.conflist`);
    writeFileSync(path, JSON.stringify(conflist));
    const r = runner();
    const { s, text, cleanup } = servers(r, cni.path);
    try {
      await s.ensure(spec);
      const plugins = (JSON.parse(readFileSync(path, "utf8")) as typeof conflist).plugins.map((p) => p.type);
      expect(plugins).toEqual(["bridge", "firewall"]);
      expect(statSync(path).mode & 0o777).toBe(0o644);
      expect(readdirSync(cni.path)).toEqual([`${NET}.conflist`]);
      expect(text()).toContain("port mapping removed");
      const before = readFileSync(path, "utf8");
      await s.ensure(spec);
      expect(readFileSync(path, "utf8")).toBe(before);
    } finally {
      cleanup();
      cni.cleanup();
    }
  });

  it("refuses to go on when podman uses CNI and the conflist is not where it looks", async () => {
    const r = runner().on(has("info"), ok("cni\n"));
    const { s, cleanup } = servers(r);
    try {
      await expect(s.ensure(spec)).rejects.toThrow(/podman uses CNI but .*tsl-net-.*\.conflist does not exist/);
      expect(r.find("run", "--detach")).toEqual([]);
    } finally {
      cleanup();
    }
  });

  it("needs nothing with netavark, which adds no NAT rules for an internal network", async () => {
    const r = runner().on(has("info"), ok("netavark\n"));
    const { s, cleanup } = servers(r);
    try {
      expect((await s.ensure(spec)).action).toBe("created");
    } finally {
      cleanup();
    }
  });
});

describe("PodmanAppRedis.remove", () => {
  it("removes container and volume, and the network without --force (which would remove the app's containers)", async () => {
    const runner = new ScriptedRunner().on(has("network", "rm"), () => new CommandError("podman", "exit", 2, "in use"));
    const { s, cleanup } = servers(runner);
    try {
      expect(await s.remove(APP)).toEqual({ networkKept: true });
      expect(runner.find("rm", "--force", CONTAINER)).toHaveLength(1);
      expect(runner.find("volume", "rm", CONTAINER)).toHaveLength(1);
      const netRm = runner.find("network", "rm")[0] ?? [];
      expect(netRm).toContain(NET);
      expect(netRm).not.toContain("--force");
      expect(netRm).not.toContain("-f");
    } finally {
      cleanup();
    }
  });
});

describe("PodmanAppRedis.list", () => {
  it("finds this bot's servers, and networks left without a server (to finish their clean-up)", async () => {
    const other = "22222222-3333-4444-8555-666666666666";
    const runner = new ScriptedRunner()
      .on(
        has("ps"),
        ok(
          JSON.stringify([
            { State: "exited", Labels: { "io.tussilago.app": APP, "io.tussilago.managed": "app-redis" } },
          ]),
        ),
      )
      .on(
        has("network", "ls"),
        ok(
          JSON.stringify([
            { name: NET, labels: { "io.tussilago.app": APP } },
            { labels: { "io.tussilago.app": other } },
          ]),
        ),
      );
    const { s, cleanup } = servers(runner);
    try {
      expect(await s.list()).toEqual([
        { appUuid: APP, running: false },
        { appUuid: other, running: false },
      ]);
      for (const call of [runner.find("ps")[0], runner.find("network", "ls")[0]]) {
        expect(call).toEqual(
          expect.arrayContaining(["label=io.tussilago.managed=app-redis", "label=io.tussilago.instance=abc123"]),
        );
      }
    } finally {
      cleanup();
    }
  });
});

describe("PodmanEngine and the app network", () => {
  const appSpec: RunContainerSpec = {
    name: "tsl-web",
    image: "localhost/app:1",
    command: ["python3", "app.py"],
    labels: {},
    memoryMb: 128,
    cpus: 1,
    pidsLimit: 128,
    network: "bridge-host",
    allowEgress: false,
    tmpfsMb: 64,
    appNetwork: NET,
  };

  async function runWith(networkExists: boolean): Promise<string[]> {
    const { logger } = memoryLogger("debug");
    const dir = tempDir("tsl-engine-");
    let inspected = 0;
    const runner = new ScriptedRunner()
      .on(has("network", "exists", NET), () => (networkExists ? ok("") : exit1()))
      .on(has("network", "inspect"), ok("podman9 10.89.9.1\n"))
      .on(has("container", "inspect"), () =>
        ++inspected === 1
          ? noSuchContainer()
          : ok(JSON.stringify([{ Name: "tsl-web", ImageName: "localhost/app:1", State: { Running: true } }])),
      );
    try {
      await new PodmanEngine(runner, logger, { stateDir: dir.path, resolvConfPath: "/nonexistent" }).runContainer(
        appSpec,
      );
      const run = runner.find("run", "--detach")[0] ?? [];
      return run.flatMap((a, i) => (a === "--network" ? [run[i + 1] ?? ""] : []));
    } finally {
      dir.cleanup();
    }
  }

  it("joins the app's network as a second network while it exists", async () => {
    expect(await runWith(true)).toEqual(["tussilago-isolated", NET]);
  });

  it("runs on the shared bridge only when the app has no private Redis (no such network)", async () => {
    expect(await runWith(false)).toEqual(["tussilago-isolated"]);
  });
});
