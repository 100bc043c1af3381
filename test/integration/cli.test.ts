import { type ChildProcess, spawn } from "node:child_process";
import { join } from "node:path";
import { eq } from "drizzle-orm";
import type { Redis } from "ioredis";
import pg from "pg";
import { describe, expect, it } from "vitest";
import { memoryOutput } from "../../src/cli/output.ts";
import { runCli } from "../../src/cli/run.ts";
import { type Db, databasePath, openDb } from "../../src/db/client.ts";
import { apps, auditEvents } from "../../src/db/schema.ts";
import { createApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import {
  claimDeployment,
  finishDeployment,
  getDeployment,
  listDeployments,
  recordStage,
} from "../../src/domain/deployments.ts";
import { recordIncident } from "../../src/domain/incidents.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import {
  DEFAULT_ROLE_LIMITS,
  dropTenantStore,
  provisionTenantStore,
  type TenantStoreDeps,
  tenantStoreNames,
} from "../../src/domain/tenant-databases.ts";
import { ensureSlackUser, roleIn } from "../../src/domain/users.ts";
import { PgPostgresAdmin } from "../../src/infra/postgres-admin.ts";
import { dropPrefix, memoryLogger, TEST_REDIS_URL, tempDir, testRedis, uniquePrefix } from "../helpers/fixtures.ts";

// The real CLI (`node src/cli.ts`) against a temp data dir and the test Redis under a per-test BullMQ prefix.
// The test plays the pipeline worker by writing the deployment row, as the bot's worker would.

interface Cli {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<number | null>;
  /** Resolves once stdout contains `text`. */
  waitFor: (text: string) => Promise<void>;
}

interface Result {
  code: number | null;
  stdout: string;
  stderr: string;
}

interface Fixture {
  dataDir: string;
  prefix: string;
  redis: Redis;
  db: Db;
  env: Record<string, string>;
  start: (args: string[], extraEnv?: Record<string, string>) => Cli;
  run: (args: string[], extraEnv?: Record<string, string>) => Promise<Result>;
  /** runCli in this process: cheaper than a spawn where no real process is needed. */
  inProcess: (args: string[], env?: Record<string, string | undefined>) => Promise<Result>;
}

type OnFinished = (fn: () => Promise<void> | void) => void;

/** Everything one test needs, torn down when that test finishes. */
function fixture(onFinished: OnFinished): Fixture {
  const cleanups: Array<() => Promise<void> | void> = [];
  onFinished(async () => {
    for (const c of cleanups.reverse()) await c();
  });
  const dir = tempDir("tussilago-cli-");
  const prefix = uniquePrefix();
  const redis = testRedis();
  const db = openDb(databasePath(dir.path));
  cleanups.push(
    dir.cleanup,
    () => redis.quit().then(() => undefined),
    () => dropPrefix(redis, prefix),
    () => {
      db.$client.close();
    },
  );
  const env = {
    PATH: process.env.PATH ?? "",
    HOME: process.env.HOME ?? "/tmp",
    TUSSILAGO_DATA_DIR: dir.path,
    REDIS_URL: TEST_REDIS_URL,
    TUSSILAGO_QUEUE_PREFIX: prefix,
  };
  const start = (args: string[], extraEnv: Record<string, string> = {}): Cli => {
    const child = spawn(process.execPath, ["src/cli.ts", ...args], {
      env: { ...env, ...extraEnv },
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    let err = "";
    const waiters: Array<{ text: string; resolve: () => void }> = [];
    child.stdout?.on("data", (d: Buffer) => {
      out += d.toString();
      for (const w of waiters) if (out.includes(w.text)) w.resolve();
    });
    child.stderr?.on("data", (d: Buffer) => {
      err += d.toString();
    });
    const exit = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    cleanups.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
    });
    return {
      child,
      stdout: () => out,
      stderr: () => err,
      exit,
      waitFor: (text) =>
        new Promise<void>((resolve, reject) => {
          if (out.includes(text)) return resolve();
          waiters.push({ text, resolve });
          void exit.then((code) => reject(new Error(`exited ${code} before printing ${text}: ${out}${err}`)));
        }),
    };
  };
  const run = async (args: string[], extraEnv: Record<string, string> = {}) => {
    const cli = start(args, extraEnv);
    const code = await cli.exit;
    return { code, stdout: cli.stdout(), stderr: cli.stderr() };
  };
  // The same entry point in this process: cheaper than a spawn for paths that need no real process.
  const inProcess = async (args: string[], overrides: Record<string, string | undefined> = {}) => {
    const output = memoryOutput(false);
    const code = await runCli(args, { env: { ...env, ...overrides }, output, onInterrupt: () => () => {} });
    return { code, stdout: output.stdout(), stderr: output.stderr() };
  };
  return { dataDir: dir.path, prefix, redis, db, env, start, run, inProcess };
}

function addApp(db: Db, slug = "shop") {
  return createApp(db, { slug, gitUrl: `https://git.example.com/${slug}.git`, domain: `${slug}.example.com` });
}

const UUID = /deployment ([0-9a-f-]{36}) queued/;

function deploymentUuid(stdout: string): string {
  const uuid = UUID.exec(stdout)?.[1];
  if (!uuid) throw new Error(`no deployment uuid in: ${stdout}`);
  return uuid;
}

async function waitingJobIds(redis: Redis, prefix: string): Promise<string[]> {
  return redis.lrange(`${prefix}:deploy:wait`, 0, -1);
}

// Sequential on purpose: each spawn costs about a second of CPU, and on two busy cores concurrent tests only
// stretch each other towards their timeouts.
describe("tussilago CLI", () => {
  it("creates and lists apps, with exit codes 0 / 1 / 2", async ({ onTestFinished }) => {
    const f = fixture(onTestFinished);
    const created = await f.run([
      "apps",
      "create",
      "shop",
      "--git",
      "https://git.example.com/shop.git",
      "--domain",
      "shop.example.com",
    ]);
    expect(created).toMatchObject({ code: 0, stderr: "" });
    expect(created.stdout).toMatch(
      /^created app shop \(tenant default, shop\.example\.com, branch main\) [0-9a-f-]{36}\n$/,
    );

    const [list, usage, unknown] = await Promise.all([
      f.run(["apps", "list"]),
      f.run(["deploy", "shop", "--bogus"]),
      f.run(["status", "nope"]),
    ]);
    expect(list.code).toBe(0);
    expect(list.stdout.split("\n")[0]).toMatch(/^APP\s+TENANT\s+DOMAIN\s+BRANCH\s+RELEASE\s+LAST DEPLOY$/);
    expect(list.stdout.split("\n")[1]).toMatch(/^shop\s+default\s+shop\.example\.com\s+main\s+-\s+-$/);
    expect(usage.code).toBe(2);
    expect(usage.stdout).toBe("");
    expect(usage.stderr).toBe(
      "tussilago: Unknown option '--bogus'\nusage: tussilago deploy <app> [ref] [--no-follow] [--timeout 30m]\n",
    );
    // The env has no TUSSILAGO_SECRET_KEY: the CLI does not need it. Errors are one line, never a stack trace.
    expect(unknown).toEqual({ code: 1, stdout: "", stderr: "error: app nope not found\n" });
  });

  it("apps create refuses a file:// URL at once unless the bot allows them (the first deploy would fail later)", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    const args = ["apps", "create", "local", "--git", "file:///srv/git/local.git", "--domain", "local.example.com"];
    const refused = await f.run(args);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toBe(
      "error: file:// git URLs are disabled on this bot (TUSSILAGO_GIT_ALLOW_FILE_URLS=1 allows local repositories)\n",
    );
    expect((await f.run(["apps", "list", "--json"])).stdout).toBe("[]\n");
    const allowed = await f.run(args, { TUSSILAGO_GIT_ALLOW_FILE_URLS: "1" });
    expect(allowed.code).toBe(0);
  });

  it("deploy enqueues deploy-<uuid>; a newer deploy supersedes it, removes its job, and the follower exits 3", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    addApp(f.db);
    const following = f.start(["deploy", "shop"]);
    await following.waitFor("deployment queued\n");
    const firstUuid = deploymentUuid(following.stdout());
    expect(following.stdout().split("\n")[0]).toBe(`deployment ${firstUuid} queued for shop (ref main)`);
    expect(await f.redis.exists(`${f.prefix}:deploy:deploy-${firstUuid}`)).toBe(1);
    expect(await waitingJobIds(f.redis, f.prefix)).toEqual([`deploy-${firstUuid}`]);

    const newer = await f.run(["deploy", "shop", "v1.2", "--no-follow"]);
    expect(newer.code).toBe(0);
    const secondUuid = deploymentUuid(newer.stdout);
    expect(newer.stdout).toBe(
      `deployment ${secondUuid} queued for shop (ref v1.2)\nsuperseded queued deployment ${firstUuid}\n`,
    );
    expect(getDeployment(f.db, firstUuid).status).toBe("superseded");
    expect(getDeployment(f.db, secondUuid)).toMatchObject({ status: "queued", ref: "v1.2", trigger: "cli" });
    expect(await f.redis.exists(`${f.prefix}:deploy:deploy-${firstUuid}`)).toBe(0);
    expect(await waitingJobIds(f.redis, f.prefix)).toEqual([`deploy-${secondUuid}`]);

    expect(await following.exit).toBe(3);
    expect(following.stdout()).toContain("deployment superseded\n");
    expect(following.stderr()).toBe("deployment superseded: superseded by a newer deployment\n");
  });

  it("follows a deployment stage by stage and exits 0 when it succeeds", async ({ onTestFinished }) => {
    const f = fixture(onTestFinished);
    addApp(f.db);
    const cli = f.start(["deploy", "shop"]);
    await cli.waitFor("deployment queued\n");
    const uuid = deploymentUuid(cli.stdout());
    claimDeployment(f.db, uuid);
    const t = Date.now();
    recordStage(f.db, uuid, "source", { status: "running", startedAt: t });
    await cli.waitFor("source running\n");
    for (const stage of ["source", "build", "run", "health", "route"]) {
      recordStage(f.db, uuid, stage, { status: "succeeded", startedAt: t, finishedAt: t + 1_000 });
    }
    recordRelease(f.db, { deploymentUuid: uuid, image: "localhost/img:1", commitSha: null, startCommand: "web" });
    finishDeployment(f.db, uuid, "succeeded");

    // The process ends by itself (Redis and the database closed) with exit code 0.
    expect(await cli.exit).toBe(0);
    const lines = cli.stdout().trimEnd().split("\n");
    // Not a terminal: one line per change, in pipeline order, then the summary.
    expect(lines.slice(1)).toEqual([
      "deployment queued",
      "source running",
      "deployment running",
      "source succeeded (1.0s)",
      "build succeeded (1.0s)",
      "run succeeded (1.0s)",
      "health succeeded (1.0s)",
      "route succeeded (1.0s)",
      "deployment succeeded",
      expect.stringMatching(/^deployed in \d/),
    ]);
    expect(cli.stderr()).toBe("");
  });

  it("Ctrl-C stops following without cancelling the deployment", async ({ onTestFinished }) => {
    const f = fixture(onTestFinished);
    addApp(f.db);
    const cli = f.start(["deploy", "shop"]);
    await cli.waitFor("deployment queued\n");
    const uuid = deploymentUuid(cli.stdout());
    cli.child.kill("SIGINT");
    expect(await cli.exit).toBe(130);
    expect(cli.stderr()).toBe(
      `stopped following; deployment ${uuid} was not cancelled and goes on (check it with: tussilago status shop)\n`,
    );
    expect(getDeployment(f.db, uuid).status).toBe("queued");
    expect(await f.redis.exists(`${f.prefix}:deploy:deploy-${uuid}`)).toBe(1);
  });

  it("exits 1 with the failure reason when the followed deployment fails, and at the follow timeout", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    const app = addApp(f.db);
    const failing = f.inProcess(["deploy", "shop"]);
    const uuid = await until(() => listDeployments(f.db, app.uuid)[0]?.uuid);
    claimDeployment(f.db, uuid);
    finishDeployment(f.db, uuid, "failed", "build failed: uv sync exited 1");
    const failed = await failing;
    expect(failed.code).toBe(1);
    expect(failed.stderr).toMatch(/^error: deployment failed after \S+: build failed: uv sync exited 1\n$/);

    const timedOut = await f.inProcess(["deploy", "shop", "--timeout", "1s"]);
    expect(timedOut.code).toBe(1);
    expect(timedOut.stderr).toMatch(
      /^error: stopped following after 1\.0s; deployment [0-9a-f-]{36} is still queued \(check it with: tussilago status shop\)\n$/,
    );
  });

  it("cancel: a queued deployment is cancelled and its job removed; a running one is followed until it stopped", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    addApp(f.db);
    const queued = deploymentUuid((await f.inProcess(["deploy", "shop", "--no-follow"])).stdout);
    const first = await f.inProcess(["cancel", "shop"]);
    expect(first).toMatchObject({
      code: 0,
      stdout: `deployment ${queued} of shop cancelled (it had not started)\n`,
      stderr: "",
    });
    expect(getDeployment(f.db, queued)).toMatchObject({
      status: "cancelled",
      failureReason: "cancelled by an operator (CLI)",
    });
    expect(await f.redis.exists(`${f.prefix}:deploy:deploy-${queued}`)).toBe(0);

    const running = deploymentUuid((await f.inProcess(["deploy", "shop", "--no-follow"])).stdout);
    claimDeployment(f.db, running);
    const following = f.inProcess(["cancel", running]);
    // What the deploy job does once it sees the flag (test/unit/deploy-cancel.test.ts).
    await until(() => getDeployment(f.db, running).cancelRequestedBy ?? undefined);
    finishDeployment(f.db, running, "cancelled", "cancelled by an operator (CLI)");
    const second = await following;
    expect(second.code).toBe(0);
    expect(second.stdout.split("\n")[0]).toBe(`deployment ${running} of shop is running: asked to stop`);
    expect(second.stdout.trimEnd().split("\n").at(-1)).toBe("deployment cancelled by an operator (CLI)");
    expect((await f.inProcess(["cancel", "shop"])).stdout).toBe("shop has no queued or running deployment to cancel\n");
    expect((await f.inProcess(["cancel", "Not_An_App"])).code).toBe(2);
  });

  it("reconcile asks the bot's reconcile worker for a pass now", async ({ onTestFinished }) => {
    const f = fixture(onTestFinished);
    const result = await f.inProcess(["reconcile"]);
    expect(result.code).toBe(0);
    const jobId = /reconcile requested \((reconcile-cli-\d+)\)/.exec(result.stdout)?.[1];
    expect(jobId).toBeDefined();
    expect(await f.redis.lrange(`${f.prefix}:reconcile:wait`, 0, -1)).toEqual([jobId]);
    expect(JSON.parse((await f.redis.hget(`${f.prefix}:reconcile:${jobId}`, "data")) ?? "null")).toEqual({
      reason: "cli",
    });
  });

  it("read commands answer in text and --json, with only slugs, vN and UUIDs", async ({ onTestFinished }) => {
    const f = fixture(onTestFinished);
    const app = addApp(f.db);
    const deployed = await f.inProcess(["deploy", "shop", "--no-follow"]);
    const uuid = deploymentUuid(deployed.stdout);
    claimDeployment(f.db, uuid);
    const release = recordRelease(f.db, {
      deploymentUuid: uuid,
      image: "localhost/img:1",
      commitSha: null,
      startCommand: "web",
      pythonVersion: "3.14",
    });
    finishDeployment(f.db, uuid, "succeeded");

    const [list, status, releases, releasesText, statusText] = await Promise.all([
      f.inProcess(["apps", "list", "--json"]),
      f.inProcess(["status", "shop", "--json"]),
      f.inProcess(["releases", "shop", "--json"]),
      f.inProcess(["releases", "shop"]),
      f.inProcess(["status", "shop"]),
    ]);
    // The live release's Python version (docs/python-apps.md).
    expect(statusText.stdout).toMatch(/^python +3\.14 \(release v1\)$/m);
    expect(JSON.parse(list.stdout)).toEqual([
      expect.objectContaining({
        slug: "shop",
        currentRelease: { uuid: release.uuid, version: 1 },
        lastDeployment: expect.objectContaining({ uuid, status: "succeeded" }),
      }),
    ]);
    const s = JSON.parse(status.stdout) as {
      app: { uuid: string };
      currentRelease: { uuid: string };
      deployments: unknown[];
    };
    expect(s.app.uuid).toBe(app.uuid);
    expect(s.currentRelease.uuid).toBe(release.uuid);
    expect(s.deployments).toHaveLength(1);
    expect(JSON.parse(releases.stdout)).toEqual({
      app: "shop",
      releases: [expect.objectContaining({ version: 1, uuid: release.uuid })],
    });
    expect(releasesText.stdout).toMatch(
      new RegExp(`^RELEASE +UUID +COMMIT +CREATED +STATE\nv1 +${release.uuid} +- +\\S+ +current\n$`),
    );
    for (const r of [list, status, releases]) {
      expect(r.code).toBe(0);
      expect(r.stdout).not.toMatch(/"(id|appId|tenantId|deploymentId)"/);
    }
  });

  it("status names an app the data plane could not bring back, with the reason", async ({ onTestFinished }) => {
    const f = fixture(onTestFinished);
    const app = addApp(f.db);
    recordIncident(f.db, { appUuid: app.uuid, kind: "image_missing", reason: "the current release's image is gone" });
    const text = await f.inProcess(["status", "shop"]);
    expect(text.stdout).toMatch(/^DOWN +image missing since \S+: the current release's image is gone$/m);
    const json = JSON.parse((await f.inProcess(["status", "shop", "--json"])).stdout) as { incident: { kind: string } };
    expect(json.incident.kind).toBe("image_missing");
  });

  it("without REDIS_URL or a running bot, deploy fails with a clear message and records nothing", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    const app = addApp(f.db);
    const result = await f.inProcess(["deploy", "shop"], { REDIS_URL: undefined });
    expect(result.code).toBe(1);
    const socket = join(f.dataDir, "redis", "redis.sock");
    expect(result.stderr).toBe(
      `error: the bot is not running (no Redis at ${socket}); start it with npm start or set REDIS_URL\n`,
    );
    expect(listDeployments(f.db, app.uuid)).toEqual([]);
  });
});

describe("tussilago CLI: operator commands", () => {
  it("grants a role that the bot then honours, links Slack and GitHub, with exit codes 0 / 1 / 2", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    const app = addApp(f.db);
    const granted = await f.run(["users", "grant", "T0123:U0456", "deployer", "--name", "Ann"]);
    expect(granted).toEqual({
      code: 0,
      stdout: "granted deployer to T0123:U0456 (Ann) in tenant default\n",
      stderr: "",
    });
    const actor = ensureSlackUser(f.db, { teamId: "T0123", userId: "U0456", displayName: "Ann" });
    expect(roleIn(f.db, actor, "default")).toBe("deployer");

    const [listed, badUser, unknownTenant, linked, github] = await Promise.all([
      f.inProcess(["users", "list"]),
      f.inProcess(["users", "grant", "U0456", "admin"]),
      f.inProcess(["users", "revoke", "T0123:U0456", "--tenant", "acme"]),
      f.inProcess(["apps", "link-channel", "shop", "C0DEPLOYS"]),
      // The link's webhook secret is sealed with the bot's key, so linking GitHub needs it.
      f.inProcess(["apps", "link-github", "shop", "acme/shop", "--tag-pattern", "v*"], {
        TUSSILAGO_SECRET_KEY: "cli-test-secret-key-0123456789abcdef",
      }),
    ]);
    expect(listed.stdout).toMatch(/^TENANT +USER +NAME +ROLE +SINCE\ndefault +T0123:U0456 +Ann +deployer +\S+\n$/);
    expect(badUser).toEqual({
      code: 2,
      stdout: "",
      stderr:
        'tussilago: user "U0456": must be TEAM_ID:USER_ID, e.g. T0123ABCD:U0456EFGH\n' +
        'usage: tussilago users grant <TEAM:USER> <viewer|deployer|approver|admin> [--tenant default] [--name "Display Name"]\n',
    });
    expect(unknownTenant).toEqual({ code: 1, stdout: "", stderr: "error: T0123:U0456 has no role in tenant acme\n" });
    expect(linked).toEqual({ code: 0, stdout: "linked shop to Slack channel C0DEPLOYS\n", stderr: "" });
    expect(github.code).toBe(0);
    expect(github.stdout).toMatch(/\(pending\).*\nwebhook secret \(shown once\): [0-9a-f]{64}\n/);
    const noKey = await f.inProcess(["apps", "link-github", "shop", "acme/other"]);
    expect(noKey.code).toBe(1);
    expect(noKey.stderr).toMatch(/^error: TUSSILAGO_SECRET_KEY is required for apps link-github/);
    const row = f.db
      .select({ channel: apps.slackChannelId, repo: apps.githubRepo, tags: apps.deployTagPattern })
      .from(apps)
      .where(eq(apps.uuid, app.uuid))
      .get();
    expect(row).toEqual({ channel: "C0DEPLOYS", repo: "acme/shop", tags: "v*" });
    const audited = f.db.select({ label: auditEvents.actorLabel, action: auditEvents.action }).from(auditEvents).all();
    expect(audited).toEqual(
      expect.arrayContaining([
        { label: "cli", action: "role.grant" },
        { label: "cli", action: "app.link-channel" },
        { label: "cli", action: "app.link-github" },
      ]),
    );
  });

  it("db create enqueues provision-postgres-create-<uuid> on the bot's queue; drop needs --confirm", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    const app = addApp(f.db);
    const created = await f.run(["db", "create", "shop"]);
    const jobId = `provision-postgres-create-${app.uuid}`;
    expect(created).toEqual({
      code: 0,
      stdout: `queued postgres create for shop (job ${jobId})\nthe app gets its credentials on its next deploy; check with: tussilago db show shop\n`,
      stderr: "",
    });
    expect(JSON.parse((await f.redis.hget(`${f.prefix}:provision:${jobId}`, "data")) ?? "null")).toEqual({
      appUuid: app.uuid,
      action: "create",
      kind: "postgres",
    });

    const refused = await f.run(["db", "drop", "shop"]);
    expect(refused).toEqual({
      code: 2,
      stdout: "",
      stderr:
        "tussilago: db drop deletes all of the app's data: repeat its name to confirm (--confirm shop)\n" +
        "usage: tussilago db drop <app> --confirm <app> [--kind postgres|redis]\n",
    });
    const dropped = await f.inProcess(["db", "drop", "shop", "--confirm", "shop", "--kind", "redis"]);
    expect(dropped.code).toBe(0);
    expect(await f.redis.lrange(`${f.prefix}:provision:wait`, 0, -1)).toEqual([
      `provision-redis-drop-${app.uuid}`,
      jobId,
    ]);

    // show and reveal need the bot's secrets; without them they say which variable, and touch nothing.
    const [show, reveal] = await Promise.all([
      f.inProcess(["db", "show", "shop"]),
      f.inProcess(["db", "reveal", "shop"]),
    ]);
    expect(show).toEqual({
      code: 1,
      stdout: "",
      stderr: "error: TUSSILAGO_SECRET_KEY is required for db show (the bot's key: it decrypts stored credentials)\n",
    });
    expect(reveal).toEqual({
      code: 1,
      stdout: "",
      stderr: "error: TUSSILAGO_PG_ADMIN_URL is required for db reveal --kind postgres\n",
    });
    const requests = f.db.select({ label: auditEvents.actorLabel, action: auditEvents.action }).from(auditEvents).all();
    expect(requests).toEqual([
      { label: "cli", action: "tenant-store.postgres.create-requested" },
      { label: "cli", action: "tenant-store.redis.drop-requested" },
    ]);
  });
});

describe("tussilago CLI: db reveal against real PostgreSQL", () => {
  const ADMIN_URL =
    process.env.TEST_PG_ADMIN_URL ?? "postgres://tussilago_admin:tussilago_admin@127.0.0.1:5432/postgres";
  const SECRET_KEY = "cli-test-secret-key-0123456789abcdef";

  it("rotates, prints a URL that logs in on stdout only, and show never prints the password", async ({
    onTestFinished,
  }) => {
    const f = fixture(onTestFinished);
    const app = addApp(f.db);
    const admin = new PgPostgresAdmin({ adminUrl: ADMIN_URL, log: memoryLogger("silent").logger });
    const adminUrl = new URL(ADMIN_URL);
    const deps: TenantStoreDeps = {
      db: f.db,
      secrets: new SecretBox(SECRET_KEY),
      log: memoryLogger("silent").logger,
      postgres: admin,
      redisAcl: undefined,
      settings: {
        postgres: {
          publicHost: adminUrl.hostname,
          publicPort: Number(adminUrl.port || 5432),
          limits: DEFAULT_ROLE_LIMITS,
        },
        redis: undefined,
      },
    };
    onTestFinished(async () => {
      await dropTenantStore(deps, app.uuid, "postgres").catch(() => undefined);
      await admin.close();
    });
    await provisionTenantStore(deps, app.uuid, "postgres");
    const name = tenantStoreNames(app.uuid).pg;
    const env = { TUSSILAGO_SECRET_KEY: SECRET_KEY, TUSSILAGO_PG_ADMIN_URL: ADMIN_URL };

    const revealed = await f.run(["db", "reveal", "shop"], env);
    expect(revealed.code).toBe(0);
    expect(revealed.stdout).toMatch(
      new RegExp(`^postgres://${name}:[A-Za-z0-9_-]{43}@${adminUrl.hostname}:${adminUrl.port || 5432}/${name}\\n$`),
    );
    expect(revealed.stderr).toMatch(/^warning: the postgres password of shop was rotated to show it; [^\n]+\n$/);
    const client = new pg.Client({ connectionString: revealed.stdout.trim() });
    await client.connect();
    try {
      expect((await client.query("select current_user as u")).rows).toEqual([{ u: name }]);
    } finally {
      await client.end();
    }

    const shown = await f.inProcess(["db", "show", "shop", "--kind", "postgres"], env);
    const password = new URL(revealed.stdout.trim()).password;
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`postgres://${name}@${adminUrl.hostname}`);
    expect(shown.stdout).not.toContain(password);
  });
});

/** Polls a condition in the test's own process (the CLI under test writes from another connection). */
async function until<T>(get: () => T | undefined, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = get();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error("condition not met in time");
    await new Promise((r) => setTimeout(r, 50));
  }
}
