import { describe, expect, it } from "vitest";
import {
  BUILD_CPU_SHARES,
  buildRunArgs,
  COMMIT_CONTAINERFILE,
  COMMIT_IGNOREFILE,
  commitImageArgs,
  DEFAULT_SETTINGS,
  InvalidPodmanArgument,
  oneShotArgs,
  type RunContainerSpec,
  runContainerArgs,
} from "../../src/infra/podman-args.ts";

function runSpec(over: Partial<RunContainerSpec> = {}): RunContainerSpec {
  return {
    name: "tsl-app-1",
    image: "localhost/tussilago-app:abc123",
    command: ["python3", "-m", "http.server", "8000"],
    envFile: "/var/lib/tussilago/env/app.env",
    labels: { "tussilago.app": "2b1c", "tussilago.role": "web" },
    memoryMb: 128,
    cpus: 0.5,
    pidsLimit: 128,
    network: "bridge-host",
    publish: { hostIp: "127.0.0.1", hostPort: 0, containerPort: 8000 },
    allowEgress: false,
    tmpfsMb: 32,
    ...over,
  };
}

/** The value that follows `flag` in argv (flags given as two elements). */
function flagValue(args: string[], flag: string): string | undefined {
  const i = args.indexOf(flag);
  return i === -1 ? undefined : args[i + 1];
}

describe("runContainerArgs", () => {
  const args = runContainerArgs(DEFAULT_SETTINGS, runSpec());

  it("selects runsc and its network mode before the subcommand", () => {
    expect(args.slice(0, 4)).toEqual(["--runtime", "/usr/bin/runsc", "--runtime-flag=network=host", "run"]);
  });

  it("keeps podman's default CPU weight (builds get less)", () => {
    expect(args).not.toContain("--cpu-shares");
  });

  it("applies every confinement flag", () => {
    for (const flag of [
      "--cap-drop=ALL",
      "--security-opt=no-new-privileges",
      "--read-only",
      "--read-only-tmpfs=false",
      "--image-volume=ignore",
      "--pull=never",
      "--detach",
    ]) {
      expect(args).toContain(flag);
    }
    expect(flagValue(args, "--tmpfs")).toBe("/tmp:rw,size=32m,mode=1777,nosuid,nodev");
    expect(flagValue(args, "--pids-limit")).toBe("128");
    expect(flagValue(args, "--memory")).toBe("128m");
    expect(flagValue(args, "--memory-swap")).toBe("128m");
    expect(flagValue(args, "--cpus")).toBe("0.5");
    expect(flagValue(args, "--user")).toBe("65534:65534");
    expect(args.filter((a) => a.startsWith("nofile=") || a.startsWith("nproc="))).toEqual([
      "nofile=4096:4096",
      "nproc=4096:4096",
    ]);
  });

  it("puts an isolated container on the firewalled network and publishes on loopback only", () => {
    expect(flagValue(args, "--network")).toBe("tussilago-isolated");
    expect(flagValue(args, "--publish")).toBe("127.0.0.1::8000/tcp");
    const fixed = runContainerArgs(
      DEFAULT_SETTINGS,
      runSpec({ publish: { hostIp: "127.0.0.1", hostPort: 41000, containerPort: 8000 } }),
    );
    expect(flagValue(fixed, "--publish")).toBe("127.0.0.1:41000:8000/tcp");
  });

  it("uses the egress network only when egress is allowed", () => {
    expect(flagValue(runContainerArgs(DEFAULT_SETTINGS, runSpec({ allowEgress: true })), "--network")).toBe(
      "tussilago-egress",
    );
  });

  it("uses runsc network=none and podman --network none for network none", () => {
    const none = runContainerArgs(DEFAULT_SETTINGS, runSpec({ network: "none", publish: undefined }));
    expect(none).toContain("--runtime-flag=network=none");
    expect(flagValue(none, "--network")).toBe("none");
    expect(() => runContainerArgs(DEFAULT_SETTINGS, runSpec({ network: "none" }))).toThrow(InvalidPodmanArgument);
  });

  it("passes env through a file, never values, and ends with -- image command", () => {
    expect(flagValue(args, "--env-file")).toBe("/var/lib/tussilago/env/app.env");
    expect(args).not.toContain("--env");
    expect(args.slice(args.indexOf("--"))).toEqual([
      "--",
      "localhost/tussilago-app:abc123",
      "python3",
      "-m",
      "http.server",
      "8000",
    ]);
  });

  it("adds only read-only bind mounts, and labels sorted", () => {
    const m = runContainerArgs(
      DEFAULT_SETTINGS,
      runSpec({ readOnlyMounts: [{ source: "/srv/static", target: "/static" }] }),
    );
    expect(flagValue(m, "--mount")).toBe("type=bind,source=/srv/static,target=/static,ro=true");
    expect(m.filter((a) => a === "--volume" || a === "-v")).toEqual([]);
    expect(m.filter((_, i) => m[i - 1] === "--label")).toEqual(["tussilago.app=2b1c", "tussilago.role=web"]);
  });

  it("honours the runtime settings", () => {
    const s = { ...DEFAULT_SETTINGS, runtimePath: "/opt/gvisor/runsc", runscNetwork: "sandbox" as const };
    expect(runContainerArgs(s, runSpec()).slice(0, 3)).toEqual([
      "--runtime",
      "/opt/gvisor/runsc",
      "--runtime-flag=network=sandbox",
    ]);
  });

  it.each<[string, Partial<RunContainerSpec>]>([
    ["an option-like name", { name: "--privileged" }],
    ["an option-like image", { image: "-v/:/host" }],
    ["a mount source with a comma", { readOnlyMounts: [{ source: "/a,rw=true", target: "/b" }] }],
    ["a mount with ..", { readOnlyMounts: [{ source: "/srv/../etc", target: "/b" }] }],
    ["a relative env file", { envFile: "app.env" }],
    ["a label value with a newline", { labels: { "tussilago.app": "a\nb" } }],
    ["a root user", { user: "root" }],
    ["zero memory", { memoryMb: 0 }],
    ["fractional pids", { pidsLimit: 128.5 }],
    ["a pids limit gVisor cannot live with", { pidsLimit: 64 }],
    ["a public publish address", { publish: { hostIp: "0.0.0.0" as "127.0.0.1", hostPort: 1, containerPort: 2 } }],
    ["an out-of-range port", { publish: { hostIp: "127.0.0.1", hostPort: 70000, containerPort: 2 } }],
  ])("rejects %s", (_label, over) => {
    expect(() => runContainerArgs(DEFAULT_SETTINGS, runSpec(over))).toThrow(InvalidPodmanArgument);
  });
});

describe("oneShotArgs (the release phase)", () => {
  it("is the app container's argv, attached and removed, with a time limit and no published port", () => {
    const spec = { ...runSpec(), network: "bridge-host" as const, allowEgress: false, timeoutSeconds: 600 };
    const app = runContainerArgs(DEFAULT_SETTINGS, { ...spec, publish: undefined });
    const once = oneShotArgs(DEFAULT_SETTINGS, {
      ...spec,
      publish: { hostIp: "127.0.0.1", hostPort: 0, containerPort: 8000 },
    } as Parameters<typeof oneShotArgs>[1]);
    expect(once).not.toContain("--detach");
    expect(once).not.toContain("--publish");
    expect(flagValue(once, "--timeout")).toBe("600");
    expect(once).toContain("--rm");
    // Everything else (confinement, network, env file, command) is exactly what the web container gets.
    expect(once.filter((a) => !["--rm", "--timeout", "600"].includes(a))).toEqual(app.filter((a) => a !== "--detach"));
  });
});

describe("buildRunArgs", () => {
  const base = {
    name: "tsl-build-1",
    image: "localhost/tussilago-python:bookworm",
    command: ["uv", "sync"],
    workDir: "/var/lib/tussilago/builds/1",
    memoryMb: 1024,
    cpus: 1,
    pidsLimit: 256,
    tmpfsMb: 256,
    network: "bridge-host" as const,
    timeoutSeconds: 600,
  };

  it("is a confined one-shot with a time limit and the work dir at /app", () => {
    const args = buildRunArgs(DEFAULT_SETTINGS, base);
    expect(args).toEqual(
      expect.arrayContaining(["--rm", "--read-only", "--cap-drop=ALL", "--security-opt=no-new-privileges"]),
    );
    expect(flagValue(args, "--timeout")).toBe("600");
    expect(flagValue(args, "--volume")).toBe("/var/lib/tussilago/builds/1:/app:rw,U");
    expect(flagValue(args, "--network")).toBe("tussilago-egress");
    expect(args.some((a) => a.startsWith("SSL_CERT_FILE"))).toBe(false);
  });

  it("mounts the CA bundle read-only and points pip/uv at it", () => {
    const args = buildRunArgs(DEFAULT_SETTINGS, {
      ...base,
      caBundle: "/etc/ssl/certs/ca-certificates.crt",
      cacheDir: "/var/cache/t",
    });
    expect(args).toContain(
      "type=bind,source=/etc/ssl/certs/ca-certificates.crt,target=/etc/ssl/certs/tussilago-build-ca.crt,ro=true",
    );
    expect(args).toEqual(
      expect.arrayContaining([
        "SSL_CERT_FILE=/etc/ssl/certs/tussilago-build-ca.crt",
        "UV_NATIVE_TLS=1",
        "UV_CACHE_DIR=/cache",
      ]),
    );
    expect(args).toContain("/var/cache/t:/cache:rw,U");
  });

  it("runs at a quarter of a serving container's CPU weight: a build cannot starve the apps it shares the host with", () => {
    expect(flagValue(buildRunArgs(DEFAULT_SETTINGS, base), "--cpu-shares")).toBe(String(BUILD_CPU_SHARES));
    expect(BUILD_CPU_SHARES).toBe(256);
  });

  it("can build without network", () => {
    const args = buildRunArgs(DEFAULT_SETTINGS, { ...base, network: "none" });
    expect(args).toContain("--runtime-flag=network=none");
    expect(flagValue(args, "--network")).toBe("none");
  });
});

describe("commitImageArgs", () => {
  it("builds from a constant Containerfile and ignore file, never the tenant's ignore files", () => {
    const args = commitImageArgs(DEFAULT_SETTINGS, {
      baseImage: "localhost/tussilago-python:bookworm",
      contextDir: "/var/lib/tussilago/builds/1",
      containerfile: "/tmp/tussilago-commit-x/Containerfile",
      ignorefile: "/tmp/tussilago-commit-x/ignore",
      tag: "localhost/tussilago-app:abc",
      labels: { "tussilago.app": "x" },
    });
    expect(args).toEqual(
      expect.arrayContaining([
        "build",
        "--pull=never",
        "--network=none",
        "--ignorefile=/tmp/tussilago-commit-x/ignore",
        "--file=/tmp/tussilago-commit-x/Containerfile",
      ]),
    );
    expect(args.filter((a) => a.startsWith("--ignorefile"))).toHaveLength(1);
    // The checkout's git metadata (top-level .git, submodules' .git files) stays out of the image.
    expect(COMMIT_IGNOREFILE.split("\n").filter(Boolean)).toEqual([".git", "**/.git"]);
    expect(flagValue(args, "--build-arg")).toBe("BASE=localhost/tussilago-python:bookworm");
    expect(args.slice(-2)).toEqual(["--", "/var/lib/tussilago/builds/1"]);
    expect(COMMIT_CONTAINERFILE).toContain("COPY --chown=0:0 . /app");
  });
});

describe("app service host names", () => {
  const settings = {
    ...DEFAULT_SETTINGS,
    appServices: [
      { address: "gateway", port: 6432, hostName: "host.containers.internal" },
      { address: "192.0.2.7", port: 6380, hostName: "cache.internal" },
      { address: "192.0.2.7", port: 6381, hostName: "cache.internal" },
      { address: "192.0.2.8", port: 5432 },
    ],
  };

  it("adds one /etc/hosts entry per named service to runtime containers, leaving podman's gateway name alone", () => {
    const args = runContainerArgs(settings, runSpec());
    expect(args.filter((a) => a === "--add-host")).toHaveLength(1);
    expect(flagValue(args, "--add-host")).toBe("cache.internal:192.0.2.7");
    expect(args.indexOf("--add-host")).toBeLessThan(args.indexOf("--"));
  });

  it("adds them to apps with egress too, and to nothing without a network", () => {
    expect(flagValue(runContainerArgs(settings, runSpec({ allowEgress: true })), "--add-host")).toBe(
      "cache.internal:192.0.2.7",
    );
    expect(runContainerArgs(settings, runSpec({ network: "none", publish: undefined }))).not.toContain("--add-host");
  });

  it("rejects names and addresses that podman could read as something else", () => {
    for (const service of [
      { address: "192.0.2.7", port: 1, hostName: "-x" },
      { address: "192.0.2.7", port: 1, hostName: "a:b" },
      { address: "192.0.2.7 ", port: 1, hostName: "ok.internal" },
    ]) {
      expect(() => runContainerArgs({ ...DEFAULT_SETTINGS, appServices: [service] }, runSpec())).toThrow(
        InvalidPodmanArgument,
      );
    }
  });
});

describe("seccomp", () => {
  const withProfile = { ...DEFAULT_SETTINGS, seccompProfile: "/var/lib/tussilago/seccomp/profile.json" };

  it("runs and builds with the profile, and tells runsc to apply it inside the sandbox", () => {
    for (const args of [
      runContainerArgs(withProfile, runSpec()),
      buildRunArgs(withProfile, {
        name: "tsl-build-1",
        image: "localhost/tussilago-python:bookworm",
        command: ["uv", "sync"],
        workDir: "/var/lib/tussilago/builds/1",
        memoryMb: 512,
        cpus: 1,
        pidsLimit: 256,
        tmpfsMb: 64,
        network: "bridge-host",
        timeoutSeconds: 600,
      }),
    ]) {
      expect(args.indexOf("--runtime-flag=oci-seccomp")).toBeLessThan(args.indexOf("run"));
      expect(args).toContain("--security-opt=no-new-privileges");
      expect(flagValue(args, "--security-opt")).toBe("seccomp=/var/lib/tussilago/seccomp/profile.json");
      expect(args.indexOf("seccomp=/var/lib/tussilago/seccomp/profile.json")).toBeLessThan(args.indexOf("--"));
    }
  });

  it("adds nothing without a profile, and refuses a path podman could misread", () => {
    const args = runContainerArgs(DEFAULT_SETTINGS, runSpec());
    expect(args).not.toContain("--runtime-flag=oci-seccomp");
    expect(args.some((a) => a.startsWith("seccomp="))).toBe(false);
    expect(() => runContainerArgs({ ...DEFAULT_SETTINGS, seccompProfile: "/x,y" }, runSpec())).toThrow(
      InvalidPodmanArgument,
    );
  });
});
