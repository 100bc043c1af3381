import { describe, expect, it } from "vitest";
import { DEFAULT_FOLLOW_TIMEOUT_MS, helpText, parseCli, UsageError } from "../../src/cli/args.ts";
import { formatElapsed, parseDuration } from "../../src/cli/duration.ts";
import { CliEnvError, parseCliEnv } from "../../src/cli/env.ts";

function usageError(argv: string[]): UsageError {
  try {
    parseCli(argv);
  } catch (err) {
    if (err instanceof UsageError) return err;
    throw err;
  }
  throw new Error(`expected a UsageError for ${argv.join(" ")}`);
}

describe("parseCli", () => {
  it("parses apps create with every option", () => {
    const cmd = parseCli([
      "apps",
      "create",
      "shop",
      "--git",
      "https://example.com/shop.git",
      "--domain",
      "shop.example.com",
      "--branch",
      "prod",
      "--tenant",
      "acme",
      "--github",
      "acme/shop",
      "--memory",
      "512",
      "--cpus",
      "1.5",
      "--health-path",
      "/healthz",
      "--allow-egress",
      "--submodules",
      "--lfs",
    ]);
    expect(cmd).toEqual({
      kind: "apps-create",
      input: {
        slug: "shop",
        gitUrl: "https://example.com/shop.git",
        domain: "shop.example.com",
        branch: "prod",
        tenant: "acme",
        githubRepo: "acme/shop",
        memoryMb: 512,
        cpus: "1.5",
        healthPath: "/healthz",
        allowEgress: true,
        gitSubmodules: true,
        gitLfs: true,
      },
    });
  });

  it("leaves unset create options undefined so the domain defaults apply", () => {
    const cmd = parseCli(["apps", "create", "shop", "--git", "https://e.com/s.git", "--domain", "s.e.com"]);
    expect(cmd).toMatchObject({
      kind: "apps-create",
      input: { branch: undefined, memoryMb: undefined, allowEgress: false },
    });
  });

  it("parses deploy with and without follow, ref and timeout", () => {
    expect(parseCli(["deploy", "shop"])).toEqual({
      kind: "deploy",
      app: "shop",
      ref: undefined,
      follow: true,
      timeoutMs: DEFAULT_FOLLOW_TIMEOUT_MS,
    });
    expect(parseCli(["deploy", "shop", "feature/x", "--no-follow", "--timeout", "90s"])).toEqual({
      kind: "deploy",
      app: "shop",
      ref: "feature/x",
      follow: false,
      timeoutMs: 90_000,
    });
  });

  it("parses rollback targets as vN or UUID", () => {
    expect(parseCli(["rollback", "shop", "v3"])).toMatchObject({ kind: "rollback", release: "v3", follow: true });
    const uuid = "6f1c2a4e-1d2b-4c3d-8e9f-0a1b2c3d4e5f";
    expect(parseCli(["rollback", "shop", uuid, "--no-follow"])).toMatchObject({ release: uuid, follow: false });
    expect(parseCli(["rollback", "shop"])).toMatchObject({ release: undefined, withRelease: false });
    expect(parseCli(["rollback", "shop", "v3", "--with-release"])).toMatchObject({ release: "v3", withRelease: true });
    expect(usageError(["rollback", "shop", "latest"]).message).toContain("release");
  });

  it("parses read commands and their --json / --lines flags", () => {
    expect(parseCli(["apps", "list", "--json"])).toEqual({ kind: "apps-list", json: true });
    expect(parseCli(["status", "shop"])).toEqual({ kind: "status", app: "shop", json: false });
    expect(parseCli(["releases", "shop", "--json"])).toEqual({ kind: "releases", app: "shop", json: true });
    expect(parseCli(["logs", "shop"])).toEqual({ kind: "logs", app: "shop", lines: 100, json: false });
    expect(parseCli(["logs", "shop", "--lines", "20"])).toMatchObject({ lines: 20 });
    expect(parseCli(["logs", "shop", "--process", "worker", "--replica", "2"])).toEqual({
      kind: "logs",
      app: "shop",
      lines: 100,
      json: false,
      process: "worker",
      replica: 2,
    });
    expect(() => parseCli(["logs", "shop", "--process", "../etc"])).toThrow(/--process/);
    expect(() => parseCli(["logs", "shop", "--replica", "17"])).toThrow(/--replica/);
  });

  it("treats help in any position as help", () => {
    expect(parseCli(["help"])).toEqual({ kind: "help" });
    expect(parseCli(["--help"])).toEqual({ kind: "help" });
    expect(parseCli(["deploy", "--help"])).toEqual({ kind: "help" });
  });

  it.each([
    [[], "no command given", "tussilago <"],
    [["frob"], 'unknown command "frob"', "tussilago <"],
    [["apps"], "apps needs a subcommand", "apps create"],
    [["apps", "delete", "x"], 'unknown command "apps delete"', "apps list"],
    [["deploy"], "missing <app>", "tussilago deploy <app>"],
    [["deploy", "shop", "main", "extra"], 'unexpected argument "extra"', "tussilago deploy"],
    [["deploy", "shop", "--bogus"], "Unknown option '--bogus'", "tussilago deploy"],
    [["deploy", "Not_A_Slug"], "app", "tussilago deploy"],
    [["deploy", "shop", "--timeout", "soon"], "--timeout", "tussilago deploy"],
    [["status", "shop", "--json=yes"], "--json", "tussilago status"],
    [["logs", "shop", "--lines", "ten"], "--lines", "tussilago logs"],
    [["logs", "shop", "--lines", "0"], "at least 1", "tussilago logs"],
    [["logs", "shop", "--lines", "9999"], "at most 5000", "tussilago logs"],
    [["apps", "create", "shop", "--domain", "s.e.com"], "--git is required", "apps create"],
    [["apps", "create", "shop", "--git", "x", "--domain", "y", "--memory", "lots"], "--memory", "apps create"],
    [["deploy", "shop", "--json"], "Unknown option '--json'", "tussilago deploy"],
  ])("rejects %j with a usage error", (argv, message, usage) => {
    const err = usageError(argv);
    expect(err.message).toContain(message);
    expect(err.usage).toContain(usage);
    expect(err.message).not.toContain("\n");
  });
});

describe("parseCli: operator commands", () => {
  it("parses users grant / revoke / list with their defaults", () => {
    expect(parseCli(["users", "grant", "T0123:U0456", "deployer"])).toEqual({
      kind: "users-grant",
      user: "T0123:U0456",
      role: "deployer",
      tenant: "default",
      name: undefined,
    });
    expect(parseCli(["users", "grant", "E01:W02", "admin", "--tenant", "acme", "--name", "Ann Example"])).toEqual({
      kind: "users-grant",
      user: "E01:W02",
      role: "admin",
      tenant: "acme",
      name: "Ann Example",
    });
    expect(parseCli(["users", "revoke", "T0123:U0456", "--tenant", "acme"])).toEqual({
      kind: "users-revoke",
      user: "T0123:U0456",
      tenant: "acme",
    });
    expect(parseCli(["users", "list"])).toEqual({ kind: "users-list", tenant: undefined, json: false });
    expect(parseCli(["users", "list", "--tenant", "acme", "--json"])).toEqual({
      kind: "users-list",
      tenant: "acme",
      json: true,
    });
  });

  it("parses apps link-channel / unlink-channel / link-github", () => {
    expect(parseCli(["apps", "link-channel", "shop", "C0ABC123"])).toEqual({
      kind: "apps-link-channel",
      app: "shop",
      channel: "C0ABC123",
    });
    expect(parseCli(["apps", "unlink-channel", "shop"])).toEqual({ kind: "apps-unlink-channel", app: "shop" });
    expect(parseCli(["apps", "link-github", "shop", "acme/shop"])).toEqual({
      kind: "apps-link-github",
      app: "shop",
      repo: "acme/shop",
      branch: undefined,
      tagPattern: undefined,
      rotateSecret: false,
    });
    expect(parseCli(["apps", "link-github", "shop", "acme/shop", "--rotate-secret"])).toMatchObject({
      rotateSecret: true,
    });
    expect(parseCli(["apps", "rotate-webhook-secret", "shop"])).toEqual({
      kind: "apps-rotate-webhook-secret",
      app: "shop",
    });
    expect(
      parseCli(["apps", "link-github", "shop", "acme/shop.py", "--branch", "release/2", "--tag-pattern", "v*.?"]),
    ).toMatchObject({ repo: "acme/shop.py", branch: "release/2", tagPattern: "v*.?" });
  });

  it("parses db commands: postgres by default, drop only with --confirm <app>", () => {
    expect(parseCli(["db", "create", "shop"])).toEqual({
      kind: "db",
      action: "create",
      app: "shop",
      store: "postgres",
      confirm: undefined,
    });
    expect(parseCli(["db", "rotate", "shop", "--kind", "redis"])).toMatchObject({ action: "rotate", store: "redis" });
    expect(parseCli(["db", "drop", "shop", "--confirm", "shop", "--kind", "redis"])).toEqual({
      kind: "db",
      action: "drop",
      app: "shop",
      store: "redis",
      confirm: "shop",
    });
    expect(parseCli(["db", "reveal", "shop"])).toEqual({ kind: "db-reveal", app: "shop", store: "postgres" });
    expect(parseCli(["db", "show", "shop"])).toEqual({ kind: "db-show", app: "shop", store: undefined, json: false });
    expect(parseCli(["db", "show", "shop", "--kind", "redis", "--json"])).toMatchObject({ store: "redis", json: true });
  });

  it.each([
    [["users"], "users needs a subcommand", "users grant"],
    [["users", "grant", "U0456", "admin"], 'user "U0456": must be TEAM_ID:USER_ID', "users grant"],
    [["users", "grant", "t0123:u0456", "admin"], "TEAM_ID:USER_ID", "users grant"],
    [["users", "grant", "T0123:U0456"], "missing <role>", "users grant"],
    [["users", "grant", "T0123:U0456", "owner"], "must be one of viewer, deployer, approver, admin", "users grant"],
    [["users", "grant", "T0123:U0456", "admin", "--tenant", "Acme"], "--tenant", "users grant"],
    [["users", "revoke", "T0123:U0456", "admin"], 'unexpected argument "admin"', "users revoke"],
    [["apps", "link-channel", "shop", "D0ABC123"], "Slack channel id", "apps link-channel"],
    [["apps", "link-channel", "shop", "C0"], "Slack channel id", "apps link-channel"],
    [["apps", "link-channel", "shop"], "missing <channel-id>", "apps link-channel"],
    [["apps", "link-github", "shop", "https://github.com/a/b"], "owner/name", "apps link-github"],
    [["apps", "link-github", "shop", "a/b", "--branch", "-x"], "--branch", "apps link-github"],
    [["apps", "link-github", "shop", "a/b", "--tag-pattern", "v[0-9]"], "--tag-pattern", "apps link-github"],
    [["db"], "db needs a subcommand", "db drop <app> --confirm <app>"],
    [["db", "create", "shop", "--kind", "mysql"], "must be one of postgres, redis", "db create"],
    [["db", "create", "shop", "--confirm", "shop"], "Unknown option '--confirm'", "db create"],
    [["db", "drop", "shop"], "repeat its name to confirm (--confirm shop)", "db drop <app> --confirm <app>"],
    [["db", "drop", "shop", "--confirm", "Shop"], "(--confirm shop)", "db drop"],
    [["db", "reveal", "Not_A_Slug"], "app", "db reveal"],
  ])("rejects %j with a usage error", (argv, message, usage) => {
    const err = usageError(argv);
    expect(err.message).toContain(message);
    expect(err.usage).toContain(usage);
    expect(err.message).not.toContain("\n");
  });

  it("lists the operator commands in help", () => {
    for (const usage of ["users grant <TEAM:USER>", "apps link-github <app>", "db drop <app> --confirm <app>"]) {
      expect(helpText()).toContain(usage);
    }
  });
});

describe("parseDuration / formatElapsed", () => {
  it.each([
    ["90", 90_000],
    ["90s", 90_000],
    ["10m", 600_000],
    ["1h", 3_600_000],
    ["0s", undefined],
    ["25h", undefined],
    ["1.5m", undefined],
    ["-5s", undefined],
  ])("parseDuration(%j) = %j", (text, ms) => {
    expect(parseDuration(text)).toBe(ms);
  });

  it("formats elapsed time compactly", () => {
    expect(formatElapsed(850)).toBe("850ms");
    expect(formatElapsed(4_240)).toBe("4.2s");
    expect(formatElapsed(185_000)).toBe("3m05s");
    expect(formatElapsed(-5)).toBe("0ms");
  });
});

describe("parseCliEnv", () => {
  const noFiles = () => false;

  it("works without TUSSILAGO_SECRET_KEY and defaults the queue prefix", () => {
    const env = parseCliEnv({ TUSSILAGO_DATA_DIR: "/srv/t" }, noFiles);
    expect(env.dataDir).toBe("/srv/t");
    expect(env.queuePrefix).toBe("tussilago");
    expect(env.logLevel).toBe("warn");
  });

  it("uses REDIS_URL when set and the embedded socket when it exists", () => {
    expect(parseCliEnv({ TUSSILAGO_DATA_DIR: "/srv/t", REDIS_URL: "redis://h:1" }, noFiles).redis()).toEqual({
      url: "redis://h:1",
    });
    const seen: string[] = [];
    const env = parseCliEnv({ TUSSILAGO_DATA_DIR: "/srv/t" }, (p) => {
      seen.push(p);
      return true;
    });
    expect(env.redis()).toEqual({ socketPath: "/srv/t/redis/redis.sock" });
    expect(seen).toEqual(["/srv/t/redis/redis.sock"]);
  });

  it("says the bot is not running when there is neither REDIS_URL nor a socket, but only when Redis is needed", () => {
    const env = parseCliEnv({ TUSSILAGO_DATA_DIR: "/srv/t" }, noFiles);
    expect(() => env.redis()).toThrow(
      "the bot is not running (no Redis at /srv/t/redis/redis.sock); start it with npm start or set REDIS_URL",
    );
  });

  it.each([
    [{ TUSSILAGO_DATA_DIR: "relative/dir" }, "TUSSILAGO_DATA_DIR"],
    [{ TUSSILAGO_DATA_DIR: "/d", REDIS_URL: "http://x" }, "REDIS_URL"],
    [{ TUSSILAGO_DATA_DIR: "/d", TUSSILAGO_QUEUE_PREFIX: "a:b" }, "TUSSILAGO_QUEUE_PREFIX"],
    [{ TUSSILAGO_DATA_DIR: "/d", LOG_LEVEL: "loud" }, "LOG_LEVEL"],
  ])("rejects %j naming the variable", (vars, variable) => {
    expect(() => parseCliEnv(vars, noFiles)).toThrow(CliEnvError);
    expect(() => parseCliEnv(vars, noFiles)).toThrow(variable);
  });
});
