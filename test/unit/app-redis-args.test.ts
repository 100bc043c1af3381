import { describe, expect, it } from "vitest";
import {
  appNetworkCreateArgs,
  appRedisAddress,
  appRedisMac,
  appRedisNames,
  appRedisRunArgs,
  appRedisVolumeCreateArgs,
  configDigest,
  redisServerCommand,
  redisSizing,
  sha256Hex,
  subnetOf,
  withoutPortMapping,
} from "../../src/infra/app-redis-args.ts";
import { DEFAULT_SETTINGS, runContainerArgs } from "../../src/infra/podman-args.ts";

const APP = "0b7c1a52-5c3e-4a4e-9d0f-6f1d2a3b4c5d";
const PASSWORD = "s3cret-password-from-randomBytes-base64url";

function valueAfter(args: string[], flag: string): string | undefined {
  const at = args.indexOf(flag);
  return at < 0 ? undefined : args[at + 1];
}

describe("private Redis sizing (docs/tenant-databases.md)", () => {
  it.each([
    [64, 64, 32],
    [128, 64, 32],
    [256, 128, 64],
    [512, 256, 128],
    [1024, 512, 256],
    [4096, 1024, 512],
    [8192, 1024, 512],
  ])("an app of %i MiB: container %i MiB, maxmemory %i MiB", (app, container, maxmemory) => {
    expect(redisSizing(app, 0.5)).toMatchObject({ containerMemoryMb: container, maxmemoryMb: maxmemory });
  });

  it("takes the app's CPUs up to one", () => {
    expect(redisSizing(256, 0.5).cpus).toBe(0.5);
    expect(redisSizing(256, 4).cpus).toBe(1);
  });
});

describe("redis-server command line", () => {
  const command = redisServerCommand({
    passwordSha256: sha256Hex(PASSWORD),
    maxmemoryMb: 64,
    policy: "noeviction",
    maxClients: 1000,
  });

  it("holds the password's SHA-256 only, never the password", () => {
    expect(command.join(" ")).not.toContain(PASSWORD);
    expect(command).toContain(`#${sha256Hex(PASSWORD)}`);
    const user = command.indexOf("--user");
    expect(command.slice(user, user + 8)).toEqual([
      "--user",
      "default",
      "on",
      `#${sha256Hex(PASSWORD)}`,
      "~*",
      "&*",
      "+@all",
      "--maxmemory",
    ]);
  });

  it("sets maxmemory, the policy, AOF persistence in /data and Redis 7's protections", () => {
    expect(valueAfter(command, "--maxmemory")).toBe("64mb");
    expect(valueAfter(command, "--maxmemory-policy")).toBe("noeviction");
    expect(valueAfter(command, "--appendonly")).toBe("yes");
    expect(valueAfter(command, "--dir")).toBe("/data");
    expect(valueAfter(command, "--enable-module-command")).toBe("no");
    expect(valueAfter(command, "--enable-debug-command")).toBe("no");
    expect(valueAfter(command, "--enable-protected-configs")).toBe("no");
  });

  it("refuses a policy Redis does not know and a hash that is not one", () => {
    expect(() =>
      redisServerCommand({ passwordSha256: sha256Hex("x"), maxmemoryMb: 64, policy: "lru" as never, maxClients: 1 }),
    ).toThrow(/policy/);
    expect(() =>
      redisServerCommand({ passwordSha256: "plaintext", maxmemoryMb: 64, policy: "noeviction", maxClients: 1 }),
    ).toThrow(/passwordSha256/);
  });
});

describe("names and addresses", () => {
  it("derive from the app UUID only", () => {
    expect(appRedisNames(APP)).toEqual({
      container: `tsl-redis-${APP}`,
      volume: `tsl-redis-${APP}`,
      network: `tsl-net-${APP}`,
    });
    expect(() => appRedisNames("../../etc")).toThrow(/UUID/);
  });

  it("the server sits at the subnet's second host; a lost network is recreated in the stored address's /24", () => {
    expect(appRedisAddress("10.89.3.0/24")).toBe("10.89.3.2");
    expect(appRedisAddress("10.90.4.16/28")).toBe("10.90.4.18");
    expect(() => appRedisAddress("10.89.3.0/30")).toThrow(/subnet/);
    expect(() => appRedisAddress("nope")).toThrow(/subnet/);
    expect(subnetOf("10.89.3.2")).toBe("10.89.3.0/24");
    expect(appRedisMac("10.89.3.2")).toBe("02:74:0a:59:03:02");
    expect(appRedisMac("10.255.0.18")).toBe("02:74:0a:ff:00:12");
  });
});

describe("podman argv", () => {
  const labels = { "io.tussilago.app": APP, "io.tussilago.managed": "app-redis" };

  it("the network is internal, without DNS", () => {
    expect(appNetworkCreateArgs(`tsl-net-${APP}`, labels)).toEqual([
      "network",
      "create",
      "--internal",
      "--disable-dns",
      "--label",
      `io.tussilago.app=${APP}`,
      "--label",
      "io.tussilago.managed=app-redis",
      `tsl-net-${APP}`,
    ]);
    expect(appNetworkCreateArgs("n", {}, "10.89.3.0/24")).toEqual([
      "network",
      "create",
      "--internal",
      "--disable-dns",
      "--subnet",
      "10.89.3.0/24",
      "n",
    ]);
  });

  it("the volume belongs to the container's user", () => {
    expect(appRedisVolumeCreateArgs("v", {})).toEqual(["volume", "create", "--opt", "o=uid=65534,gid=65534", "v"]);
  });

  it("the container has the app containers' hardening, the app network only, a fixed address and no port", () => {
    const args = appRedisRunArgs(
      { ...DEFAULT_SETTINGS, seccompProfile: "/var/lib/tussilago/seccomp-profile-redis.json" },
      {
        name: `tsl-redis-${APP}`,
        image: "localhost/tussilago-redis:7",
        network: `tsl-net-${APP}`,
        address: "10.89.3.2",
        volume: `tsl-redis-${APP}`,
        labels,
        sizing: redisSizing(256, 0.5),
        command: ["/usr/bin/redis-server"],
      },
    );
    expect(args.slice(0, 5)).toEqual([
      "--runtime",
      "/usr/bin/runsc",
      "--runtime-flag=network=host",
      "--runtime-flag=oci-seccomp",
      "run",
    ]);
    for (const flag of ["--cap-drop=ALL", "--security-opt=no-new-privileges", "--read-only", "--image-volume=ignore"]) {
      expect(args).toContain(flag);
    }
    expect(valueAfter(args, "--user")).toBe("65534:65534");
    expect(valueAfter(args, "--memory")).toBe("128m");
    expect(valueAfter(args, "--memory-swap")).toBe("128m");
    expect(valueAfter(args, "--security-opt")).toBe("seccomp=/var/lib/tussilago/seccomp-profile-redis.json");
    expect(args.filter((a) => a === "--network")).toHaveLength(1);
    expect(valueAfter(args, "--network")).toBe(`tsl-net-${APP}`);
    expect(valueAfter(args, "--ip")).toBe("10.89.3.2");
    // Stable over restarts: the app containers' ARP caches keep pointing at the right server.
    expect(valueAfter(args, "--mac-address")).toBe("02:74:0a:59:03:02");
    expect(valueAfter(args, "--volume")).toBe(`tsl-redis-${APP}:/data:rw`);
    expect(args.some((a) => a.startsWith("--publish") || a === "-p")).toBe(false);
    expect(args.slice(-2)).toEqual(["localhost/tussilago-redis:7", "/usr/bin/redis-server"]);
  });

  it("the digest changes with the password, the size and the policy", () => {
    const shape = (password: string, mb: number, policy: "noeviction" | "allkeys-lru") => ({
      image: "i",
      network: "n",
      address: "10.89.3.2",
      volume: "v",
      sizing: redisSizing(mb, 0.5),
      command: redisServerCommand({ passwordSha256: sha256Hex(password), maxmemoryMb: mb, policy, maxClients: 1 }),
    });
    const base = configDigest(shape("a", 256, "noeviction"));
    expect(configDigest(shape("a", 256, "noeviction"))).toBe(base);
    expect(configDigest(shape("b", 256, "noeviction"))).not.toBe(base);
    expect(configDigest(shape("a", 512, "noeviction"))).not.toBe(base);
    expect(configDigest(shape("a", 256, "allkeys-lru"))).not.toBe(base);
  });

  it("an app container joins its own network second: the first keeps the default route and the published port", () => {
    const args = runContainerArgs(DEFAULT_SETTINGS, {
      name: "c",
      image: "img",
      command: ["x"],
      labels: {},
      memoryMb: 256,
      cpus: 0.5,
      pidsLimit: 128,
      network: "bridge-host",
      publish: { hostIp: "127.0.0.1", hostPort: 0, containerPort: 8000 },
      allowEgress: false,
      tmpfsMb: 64,
      appNetwork: `tsl-net-${APP}`,
    });
    const networks = args.flatMap((a, i) => (a === "--network" ? [args[i + 1]] : []));
    expect(networks).toEqual(["tussilago-isolated", `tsl-net-${APP}`]);
    expect(() =>
      runContainerArgs(DEFAULT_SETTINGS, {
        name: "c",
        image: "img",
        command: [],
        labels: {},
        memoryMb: 256,
        cpus: 0.5,
        pidsLimit: 128,
        network: "bridge-host",
        allowEgress: false,
        tmpfsMb: 64,
        appNetwork: "host",
      }),
    ).toThrow(/appNetwork/);
    expect(() =>
      runContainerArgs(DEFAULT_SETTINGS, {
        name: "c",
        image: "img",
        command: [],
        labels: {},
        memoryMb: 256,
        cpus: 0.5,
        pidsLimit: 128,
        network: "bridge-host",
        allowEgress: false,
        tmpfsMb: 64,
        appNetwork: "--privileged",
      }),
    ).toThrow(/appNetwork/);
  });
});

describe("the app network's CNI configuration", () => {
  // What podman 4.3 writes for `network create --internal --disable-dns` (CNI backend), trimmed to the shape.
  const podmanInternal = {
    cniVersion: "0.4.0",
    name: "tsl-net-x",
    plugins: [
      { type: "bridge", bridge: "cni-podman3", isGateway: false, ipam: { type: "host-local" } },
      { type: "portmap", capabilities: { portMappings: true } },
      { type: "firewall", backend: "" },
      { type: "tuning" },
    ],
  };

  it("loses its portmap plugin and keeps everything else in order", () => {
    const fixed = withoutPortMapping(JSON.stringify(podmanInternal));
    expect(fixed).toBeDefined();
    expect(JSON.parse(fixed ?? "")).toEqual({
      ...podmanInternal,
      plugins: [podmanInternal.plugins[0], podmanInternal.plugins[2], podmanInternal.plugins[3]],
    });
  });

  it("is left alone when it has no portmap plugin (already repaired, or written so)", () => {
    const fixed = withoutPortMapping(JSON.stringify(podmanInternal)) ?? "";
    expect(withoutPortMapping(fixed)).toBeUndefined();
  });

  it("refuses a file that is not a configuration list", () => {
    expect(() => withoutPortMapping('{"type":"bridge"}')).toThrow(/no plugins array/);
    expect(() => withoutPortMapping("not json")).toThrow();
  });
});
