import { generateKeyPairSync, verify } from "node:crypto";
import { readFileSync } from "node:fs";
import { describe, expect, it } from "vitest";
import {
  appRedisImageCheck,
  baseImageCheck,
  type DoctorSettings,
  diskCheck,
  doctorExitCode,
  GIB,
  NODE_MINIMUM,
  netstackCheck,
  nftCheck,
  nodeCheck,
  podmanCheck,
  runDoctor,
  runscCheck,
  sysctlCheck,
} from "../../commands/doctor.ts";
import {
  caddyCheck,
  clockCheck,
  githubCheck,
  redisCheck,
  SLACK_SCOPES,
  slackCheck,
} from "../../commands/doctor-services.ts";
import { doctorSettings, formatDoctor } from "../../src/cli/doctor.ts";
import { answer, exited, FakeHostProbe, ok } from "../helpers/fake-host-probe.ts";

const settings = (extra: Partial<DoctorSettings> = {}): DoctorSettings => ({
  dataDir: "/data",
  baseImage: "localhost/tussilago-python:bookworm",
  runscNetwork: "host",
  caddyAdmin: undefined,
  redisUrl: undefined,
  slack: undefined,
  github: undefined,
  configError: undefined,
  ...extra,
});
const SLACK = { botToken: "xoxb-test", apiUrl: "https://slack.test/api" };
const ALL_SCOPES = [...SLACK_SCOPES.essential, ...SLACK_SCOPES.degraded].join(",");

describe("doctor: host tools", () => {
  it("node: below the engines minimum fails, 22 warns, 24 passes", () => {
    expect(nodeCheck("v20.18.0")).toMatchObject({ verdict: "FAIL", fix: expect.stringContaining("node@24") });
    expect(nodeCheck("22.11.9").verdict).toBe("FAIL");
    expect(nodeCheck("22.12.0")).toMatchObject({ verdict: "WARN", found: "22.12.0 (>= 22.12; 24 recommended)" });
    expect(nodeCheck("24.1.0")).toEqual({ name: "node", verdict: "PASS", found: "24.1.0" });
  });

  it("the node minimum and the Slack scopes are those of package.json and the manifest", () => {
    const pkg = JSON.parse(readFileSync("package.json", "utf8")) as { engines: { node: string } };
    expect(pkg.engines.node).toBe(`>=${NODE_MINIMUM}`);
    const manifest = readFileSync("docs/slack-manifest.yml", "utf8");
    const bot = /bot:\n((?:\s+- .+\n)+)/.exec(manifest)?.[1] ?? "";
    const scopes = [...bot.matchAll(/- (\S+)/g)].map((m) => m[1]);
    expect(scopes.sort()).toEqual([...SLACK_SCOPES.essential, ...SLACK_SCOPES.degraded].sort());
  });

  it("podman: missing, broken, old, fine", async () => {
    const probe = new FakeHostProbe();
    expect((await podmanCheck(probe)).check).toEqual({
      name: "podman",
      verdict: "PASS",
      found: "4.3.1 at /usr/bin/podman",
    });
    probe.onRun = () => ok("podman version 3.4.4\n");
    expect((await podmanCheck(probe)).check.verdict).toBe("WARN");
    probe.onRun = () => exited(1, "podman: cannot read /etc/containers/storage.conf");
    expect((await podmanCheck(probe)).check).toMatchObject({
      verdict: "FAIL",
      found: expect.stringContaining("storage.conf"),
    });
    probe.tools.delete("podman");
    expect(await podmanCheck(probe)).toEqual({
      check: { name: "podman", verdict: "FAIL", found: "not found on PATH", fix: "apt-get install -y podman" },
      path: undefined,
    });
  });

  it("runsc: its release date; missing → install; elsewhere on PATH than the bot runs it → link", async () => {
    const probe = new FakeHostProbe();
    expect((await runscCheck(probe)).check).toMatchObject({ verdict: "PASS", found: "20221219 at /usr/bin/runsc" });
    probe.tools.set("runsc", "/opt/gvisor/runsc");
    probe.paths.delete("/usr/bin/runsc");
    expect((await runscCheck(probe)).check).toMatchObject({
      verdict: "FAIL",
      fix: "ln -s /opt/gvisor/runsc /usr/bin/runsc",
    });
    probe.tools.delete("runsc");
    expect((await runscCheck(probe)).check).toMatchObject({ verdict: "FAIL", fix: "apt-get install -y runsc" });
  });

  it("runsc netstack: runs one bounded sandbox-network container with the runsc found on PATH", async () => {
    const probe = new FakeHostProbe();
    const tools = { podman: "/usr/bin/podman", runsc: "/opt/runsc", imagePresent: true };
    const failing = await netstackCheck(probe, tools, settings());
    expect(failing).toMatchObject({ verdict: "PASS" });
    expect(failing.found).toContain("cannot run with network enabled in root network namespace");
    expect(failing.found).toContain("TUSSILAGO_RUNSC_NETWORK=host is needed and set");
    const run = probe.runs.at(-1);
    expect(run?.file).toBe("/usr/bin/podman");
    expect(run?.args.slice(0, 3)).toEqual(["--runtime", "/opt/runsc", "--runtime-flag=network=sandbox"]);
    expect(run?.args).toContain("localhost/tussilago-python:bookworm");
    expect(run?.timeoutMs).toBeLessThanOrEqual(30_000);

    expect(await netstackCheck(probe, tools, settings({ runscNetwork: "sandbox" }))).toMatchObject({
      verdict: "FAIL",
      fix: "set TUSSILAGO_RUNSC_NETWORK=host",
    });
    probe.onRun = () => ({ ok: false, kind: "timeout", exitCode: undefined, stderrTail: "" });
    expect((await netstackCheck(probe, tools, settings({ runscNetwork: "sandbox" }))).found).toContain(
      "no answer within 30 s",
    );
    probe.onRun = () => ok();
    expect(await netstackCheck(probe, tools, settings())).toMatchObject({
      verdict: "WARN",
      fix: "set TUSSILAGO_RUNSC_NETWORK=sandbox",
    });
    expect((await netstackCheck(probe, tools, settings({ runscNetwork: "sandbox" }))).verdict).toBe("PASS");
    const before = probe.runs.length;
    expect((await netstackCheck(probe, { ...tools, imagePresent: false }, settings())).verdict).toBe("SKIP");
    expect(probe.runs.length).toBe(before);
  });

  it("nftables: missing, not usable, usable", async () => {
    const probe = new FakeHostProbe();
    expect(await nftCheck(probe)).toEqual({ name: "nftables", verdict: "PASS", found: "/usr/sbin/nft usable" });
    probe.onRun = () => exited(1, "Error: Operation not permitted");
    expect(await nftCheck(probe)).toMatchObject({ verdict: "FAIL", found: expect.stringContaining("not permitted") });
    probe.tools.delete("nft");
    expect(await nftCheck(probe)).toMatchObject({ verdict: "FAIL", fix: "apt-get install -y nftables" });
  });

  it("sysctl tcp_migrate_req: 1 passes, 0 warns with the command, absent warns", async () => {
    const probe = new FakeHostProbe();
    expect((await sysctlCheck(probe)).verdict).toBe("PASS");
    probe.files.set("/proc/sys/net/ipv4/tcp_migrate_req", "0\n");
    expect(await sysctlCheck(probe)).toMatchObject({
      verdict: "WARN",
      fix: expect.stringMatching(/^sysctl -w net\.ipv4\.tcp_migrate_req=1 && /),
    });
    probe.files.clear();
    expect((await sysctlCheck(probe)).verdict).toBe("WARN");
  });

  it("base image: present, missing (with the build command), podman missing", async () => {
    const probe = new FakeHostProbe();
    expect((await baseImageCheck(probe, "/usr/bin/podman", "localhost/img:1")).verdict).toBe("PASS");
    expect(probe.runs.at(-1)?.args).toEqual(["image", "exists", "localhost/img:1"]);
    probe.onRun = () => exited(1);
    expect(await baseImageCheck(probe, "/usr/bin/podman", "localhost/img:1")).toMatchObject({
      verdict: "FAIL",
      fix: "bash scripts/build-base-image.sh localhost/img:1",
    });
    expect((await baseImageCheck(probe, undefined, "localhost/img:1")).verdict).toBe("SKIP");
  });

  it("private redis image: present passes, missing fails with the build script, shared mode skips", async () => {
    const probe = new FakeHostProbe();
    expect((await appRedisImageCheck(probe, "/usr/bin/podman", "localhost/r:7")).verdict).toBe("PASS");
    expect(probe.runs.at(-1)?.args).toEqual(["image", "exists", "localhost/r:7"]);
    probe.onRun = () => exited(1);
    expect(await appRedisImageCheck(probe, "/usr/bin/podman", "localhost/r:7")).toMatchObject({
      verdict: "FAIL",
      fix: "bash scripts/build-redis-image.sh localhost/r:7",
    });
    expect((await appRedisImageCheck(probe, "/usr/bin/podman", undefined)).verdict).toBe("SKIP");
    expect(doctorSettings({ TUSSILAGO_SECRET_KEY: "k".repeat(32) }).appRedisImage).toBe("localhost/tussilago-redis:7");
    expect(
      doctorSettings({ TUSSILAGO_SECRET_KEY: "k".repeat(32), TUSSILAGO_TENANT_REDIS_MODE: "shared" }).appRedisImage,
    ).toBeUndefined();
  });

  it("disk: under 1 GiB fails, under 5 GiB warns, with the numbers", () => {
    const at = (free: number) =>
      diskCheck("/data", { freeBytes: free * GIB, totalBytes: 100 * GIB, measured: "/data" });
    expect(at(0.5)).toMatchObject({ verdict: "FAIL", found: "0.5 GiB free of 100.0 GiB at /data (needs >= 1 GiB)" });
    expect(at(3)).toMatchObject({ verdict: "WARN", found: "3.0 GiB free of 100.0 GiB at /data (5 GiB recommended)" });
    expect(at(50).verdict).toBe("PASS");
    expect(diskCheck("/data", undefined).verdict).toBe("FAIL");
  });
});

describe("doctor: services", () => {
  it("caddy embedded: asks /config/ over the socket with an empty Host; not running warns; no binary fails", async () => {
    const probe = new FakeHostProbe();
    expect((await caddyCheck(probe, settings())).verdict).toBe("PASS");
    expect(probe.asks.at(-1)).toMatchObject({
      url: "http://localhost/config/",
      socketPath: "/data/caddy/admin.sock",
      headers: { host: "" },
    });
    probe.onHttp = () => new Error("connect ECONNREFUSED /data/caddy/admin.sock");
    expect((await caddyCheck(probe, settings())).verdict).toBe("FAIL");
    probe.paths.delete("/data/caddy/admin.sock");
    expect(await caddyCheck(probe, settings())).toMatchObject({ verdict: "WARN", fix: "start the bot: npm start" });
    probe.tools.delete("caddy");
    expect(await caddyCheck(probe, settings())).toMatchObject({ verdict: "FAIL", fix: "apt-get install -y caddy" });
  });

  it("caddy remote: CADDY_ADMIN as URL or socket", async () => {
    const probe = new FakeHostProbe();
    probe.onHttp = () => answer(403, '{"error":"host not allowed"}');
    const remote = await caddyCheck(probe, settings({ caddyAdmin: "http://127.0.0.1:2019/" }));
    expect(remote).toMatchObject({ verdict: "FAIL", found: expect.stringContaining("403") });
    expect(probe.asks.at(-1)?.url).toBe("http://127.0.0.1:2019/config/");
    probe.onHttp = () => answer(200, "{}");
    expect((await caddyCheck(probe, settings({ caddyAdmin: "unix//run/caddy/admin.sock" }))).verdict).toBe("PASS");
    expect(probe.asks.at(-1)?.socketPath).toBe("/run/caddy/admin.sock");
  });

  it("redis: AOF passes; RDB only warns; no persistence fails; eviction warns; unreachable fails", async () => {
    const probe = new FakeHostProbe();
    expect(await redisCheck(probe, settings())).toMatchObject({
      verdict: "PASS",
      found: expect.stringContaining("AOF on"),
    });
    const remote = settings({ redisUrl: "redis://:hunter2@10.0.0.5:6379" });
    probe.onRedis = () => ["aof_enabled:0\r\n", ["save", "3600 1"], ["maxmemory-policy", "noeviction"]];
    const rdb = await redisCheck(probe, remote);
    expect(rdb).toMatchObject({ verdict: "WARN", fix: expect.stringContaining("CONFIG SET appendonly yes") });
    expect(rdb.found).not.toContain("hunter2");
    probe.onRedis = () => ["aof_enabled:0\r\n", ["save", ""], ["maxmemory-policy", "noeviction"]];
    expect((await redisCheck(probe, remote)).verdict).toBe("FAIL");
    probe.onRedis = () => ["aof_enabled:1\r\n", ["save", ""], ["maxmemory-policy", "allkeys-lru"]];
    expect(await redisCheck(probe, remote)).toMatchObject({
      verdict: "WARN",
      fix: expect.stringContaining("noeviction"),
    });
    // CONFIG renamed away (managed Redis): INFO alone decides.
    probe.onRedis = () => ["aof_enabled:1\r\n", new Error("ERR unknown command"), new Error("ERR unknown command")];
    expect((await redisCheck(probe, remote)).verdict).toBe("PASS");
    probe.onRedis = () => new Error("connect ECONNREFUSED 10.0.0.5:6379");
    expect(await redisCheck(probe, remote)).toMatchObject({ verdict: "FAIL", fix: "start Redis or correct REDIS_URL" });
    probe.paths.delete("/data/redis/redis.sock");
    expect((await redisCheck(probe, settings())).verdict).toBe("WARN");
  });

  it("slack: auth.test with the bot token; missing scopes are listed", async () => {
    const probe = new FakeHostProbe();
    expect((await slackCheck(probe, settings())).check.verdict).toBe("SKIP");
    const ok = (scopes: string) =>
      answer(200, '{"ok":true,"team":"Acme","user":"tussilago"}', { "x-oauth-scopes": scopes });
    probe.onHttp = () => ok(ALL_SCOPES);
    const passed = await slackCheck(probe, settings({ slack: SLACK }));
    expect(passed.check).toMatchObject({ verdict: "PASS", found: "tussilago in Acme; all manifest scopes granted" });
    expect(probe.asks.at(-1)).toMatchObject({
      method: "POST",
      url: "https://slack.test/api/auth.test",
      headers: { authorization: "Bearer xoxb-test" },
    });
    probe.onHttp = () => ok("commands,chat:write,users:read");
    const degraded = (await slackCheck(probe, settings({ slack: SLACK }))).check;
    expect(degraded).toMatchObject({
      verdict: "WARN",
      found: expect.stringContaining("missing scopes: chat:write.public, channels:history, groups:history"),
    });
    probe.onHttp = () => ok("commands,users:read");
    expect((await slackCheck(probe, settings({ slack: SLACK }))).check).toMatchObject({
      verdict: "FAIL",
      fix: expect.stringMatching(/^add the bot scopes chat:write, .*Reinstall to Workspace$/),
    });
    probe.onHttp = () => answer(200, '{"ok":false,"error":"invalid_auth"}');
    const refused = (await slackCheck(probe, settings({ slack: SLACK }))).check;
    expect(refused).toMatchObject({ verdict: "FAIL", found: "auth.test refused the token: invalid_auth" });
    expect(JSON.stringify(refused)).not.toContain("xoxb-test");
  });

  it("github token: /rate_limit; 401 fails", async () => {
    const probe = new FakeHostProbe();
    expect((await githubCheck(probe, settings())).check.verdict).toBe("SKIP");
    const github = { apiUrl: "https://gh.test", auth: { kind: "token" as const, token: "ghp_secret" } };
    probe.onHttp = () => answer(200, "{}", { "x-ratelimit-remaining": "4990", "x-ratelimit-limit": "5000" });
    expect((await githubCheck(probe, settings({ github }))).check).toMatchObject({
      verdict: "PASS",
      found: "token accepted (4990 of 5000 requests left)",
    });
    expect(probe.asks.at(-1)).toMatchObject({
      url: "https://gh.test/rate_limit",
      headers: { authorization: "Bearer ghp_secret" },
    });
    probe.onHttp = () => answer(401, '{"message":"Bad credentials"}');
    const bad = (await githubCheck(probe, settings({ github }))).check;
    expect(bad).toMatchObject({ verdict: "FAIL", found: "GET /rate_limit answered 401: Bad credentials" });
    expect(JSON.stringify(bad)).not.toContain("ghp_secret");
  });

  it("github App: GET /app with a JWT signed by the App's key", async () => {
    const { privateKey, publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = privateKey.export({ type: "pkcs1", format: "pem" }).toString();
    const probe = new FakeHostProbe();
    probe.onHttp = () => answer(200, '{"slug":"tussilago-bot"}');
    const now = Date.parse("2030-01-01T00:00:00Z");
    const github = { apiUrl: "https://gh.test", auth: { kind: "app" as const, appId: "123", privateKeyPem: pem } };
    const r = await githubCheck(probe, settings({ github }), () => now);
    expect(r.check).toMatchObject({ verdict: "PASS", found: "App tussilago-bot authenticates" });
    const ask = probe.asks.at(-1);
    expect(ask?.url).toBe("https://gh.test/app");
    const jwt = (ask?.headers?.authorization ?? "").replace(/^Bearer /, "");
    const [head, body, sig] = jwt.split(".");
    expect(verify("sha256", Buffer.from(`${head}.${body}`), publicKey, Buffer.from(sig ?? "", "base64url"))).toBe(true);
    expect(JSON.parse(Buffer.from(body ?? "", "base64url").toString())).toEqual({
      iat: now / 1000 - 60,
      exp: now / 1000 + 540,
      iss: "123",
    });
  });

  it("clock: compares with the first Date header; skipped without one", () => {
    const at = Date.parse("2030-01-01T10:00:00Z");
    const from = (offsetS: number) => ({
      source: "Slack",
      date: new Date(at).toUTCString(),
      receivedAt: at + offsetS * 1000,
    });
    expect(clockCheck([undefined, undefined]).verdict).toBe("SKIP");
    expect(clockCheck([from(1)])).toMatchObject({ verdict: "PASS", found: "+1 s against Slack's Date header" });
    expect(clockCheck([from(-30)]).verdict).toBe("WARN");
    expect(clockCheck([undefined, from(120)])).toMatchObject({
      verdict: "FAIL",
      fix: expect.stringContaining("timedatectl"),
    });
  });
});

describe("runDoctor", () => {
  it("a healthy host: every check in order, nothing FAIL, exit 0; a Date header feeds the clock", async () => {
    const probe = new FakeHostProbe();
    const date = "Tue, 01 Jan 2030 10:00:00 GMT";
    probe.onHttp = (ask) =>
      ask.url.endsWith("/auth.test")
        ? answer(200, '{"ok":true}', { "x-oauth-scopes": ALL_SCOPES, date }, Date.parse(date))
        : answer(200, "{}");
    const checks = await runDoctor(settings({ slack: SLACK, appRedisImage: "localhost/tussilago-redis:7" }), probe);
    expect(checks.map((c) => c.name)).toEqual([
      "configuration",
      "node",
      "podman",
      "runsc",
      "runsc netstack",
      "nftables",
      "sysctl net.ipv4.tcp_migrate_req",
      "base image",
      "private redis image",
      "caddy admin",
      "redis",
      "disk space",
      "clock",
      "slack token",
      "github credentials",
    ]);
    expect(checks.filter((c) => c.verdict !== "PASS").map((c) => c.name)).toEqual(["github credentials"]);
    expect(doctorExitCode(checks)).toBe(0);
  });

  it("without runsc: runsc FAILs with its fix, netstack is skipped, exit 1", async () => {
    const probe = new FakeHostProbe();
    probe.tools.delete("runsc");
    const checks = await runDoctor(settings({ configError: undefined }), probe);
    expect(checks.find((c) => c.name === "runsc")).toMatchObject({ verdict: "FAIL", fix: "apt-get install -y runsc" });
    expect(checks.find((c) => c.name === "runsc netstack")?.verdict).toBe("SKIP");
    expect(checks.filter((c) => c.verdict === "FAIL").map((c) => c.name)).toEqual(["runsc"]);
    expect(doctorExitCode(checks)).toBe(1);
  });

  it("a configuration error is a FAIL naming the variable", async () => {
    const checks = await runDoctor(settings({ configError: "TUSSILAGO_SECRET_KEY: is required" }), new FakeHostProbe());
    expect(checks[0]).toMatchObject({ verdict: "FAIL", fix: expect.stringContaining("set TUSSILAGO_SECRET_KEY") });
  });
});

describe("doctor CLI helpers", () => {
  it("doctorSettings: the bot's config; errors kept while the rest of the environment still applies", () => {
    const good = doctorSettings({
      TUSSILAGO_SECRET_KEY: "k".repeat(32),
      TUSSILAGO_DATA_DIR: "/srv/tussilago",
      TUSSILAGO_RUNSC_NETWORK: "sandbox",
      SLACK_SIGNING_SECRET: "s",
      SLACK_BOT_TOKEN: "xoxb-1",
    });
    expect(good).toMatchObject({
      dataDir: "/srv/tussilago",
      runscNetwork: "sandbox",
      slack: { botToken: "xoxb-1", apiUrl: "https://slack.com/api" },
      configError: undefined,
    });
    const bad = doctorSettings({
      TUSSILAGO_DATA_DIR: "/srv/tussilago",
      TUSSILAGO_BASE_IMAGE: "localhost/custom:1",
      TUSSILAGO_RUNSC_NETWORK: "bogus",
      SLACK_SIGNING_SECRET: "s",
      SLACK_BOT_TOKEN: "xoxb-1",
    });
    expect(bad.configError).toMatch(
      /^TUSSILAGO_SECRET_KEY: is required.*; TUSSILAGO_RUNSC_NETWORK: must be host or sandbox$/,
    );
    expect(bad).toMatchObject({ dataDir: "/srv/tussilago", baseImage: "localhost/custom:1", runscNetwork: "host" });
    expect(bad.slack).toEqual({ botToken: "xoxb-1", apiUrl: "https://slack.com/api" });
  });

  it("formatDoctor: one line per check with the fix, control characters escaped, a summary", () => {
    const text = formatDoctor([
      { name: "runsc", verdict: "FAIL", found: "not found on PATH", fix: "apt-get install -y runsc" },
      { name: "nftables", verdict: "PASS", found: "bad \u001b[2J output" },
    ]);
    expect(text).toBe(
      "FAIL  runsc     not found on PATH — fix: apt-get install -y runsc\n" +
        "PASS  nftables  bad \\x1b[2J output\n" +
        "1 failed, 0 warnings, 1 passed, 0 skipped\n",
    );
  });
});
