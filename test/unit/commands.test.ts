import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createAppCommand, listAppsCommand } from "../../commands/apps.ts";
import { deployCommand } from "../../commands/deploy.ts";
import { logsCommand } from "../../commands/logs.ts";
import { releasesCommand } from "../../commands/releases.ts";
import { statusCommand } from "../../commands/status.ts";
import { type Db, openDb } from "../../src/db/client.ts";
import { type NewApp, setAppFormation } from "../../src/domain/apps.ts";
import { claimDeployment, finishDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { DomainError } from "../../src/domain/errors.ts";
import { recordRelease } from "../../src/domain/releases.ts";
import { PodmanError } from "../../src/infra/podman.ts";
import { names } from "../../src/pipeline/settings.ts";
import { FakeEngine } from "../helpers/fake-engine.ts";
import { FakeJobQueue } from "../helpers/fake-queue.ts";
import { memoryLogger, tempDb, tempDir } from "../helpers/fixtures.ts";

const cleanups: Array<() => void> = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function setup() {
  const t = tempDb();
  cleanups.push(t.cleanup);
  return { db: t.db, ...memoryLogger("info") };
}

const appInput = (slug: string, extra: Partial<NewApp> = {}): NewApp => ({
  slug,
  gitUrl: `https://git.example.com/${slug}.git`,
  domain: `${slug}.example.com`,
  ...extra,
});

/** What the pipeline would leave behind after a successful deployment: a live release. */
function release(db: Db, appUuid: string, image = "localhost/img:1") {
  const { deployment } = requestDeployment(db, { appUuid, trigger: "cli", ref: "main" });
  claimDeployment(db, deployment.uuid);
  const rel = recordRelease(db, { deploymentUuid: deployment.uuid, image, commitSha: null, startCommand: "web" });
  finishDeployment(db, deployment.uuid, "succeeded");
  return rel;
}

function domainError(fn: () => unknown): DomainError {
  try {
    fn();
  } catch (err) {
    if (err instanceof DomainError) return err;
    throw err;
  }
  throw new Error("expected a DomainError");
}

describe("createAppCommand", () => {
  it("creates the app with defaults and logs it by UUID", () => {
    const { db, logger, lines } = setup();
    const app = createAppCommand({ db, log: logger }, appInput("shop", { tenant: "acme" }));
    expect(app).toMatchObject({ slug: "shop", tenantSlug: "acme", branch: "main", memoryMb: 256, allowEgress: false });
    expect(lines()).toContainEqual(expect.objectContaining({ msg: "app created", appId: app.uuid }));
  });

  it("refuses a taken slug (409) and invalid input (422)", () => {
    const { db, logger } = setup();
    createAppCommand({ db, log: logger }, appInput("shop"));
    expect(domainError(() => createAppCommand({ db, log: logger }, appInput("shop"))).status).toBe(409);
    const bad = domainError(() => createAppCommand({ db, log: logger }, appInput("shop2", { gitUrl: "ftp://x" })));
    expect(bad.status).toBe(422);
    expect(bad.message).toContain("gitUrl");
  });
});

describe("listAppsCommand", () => {
  it("shows each app with its current release and last deployment", async () => {
    const { db, logger } = setup();
    const shop = createAppCommand({ db, log: logger }, appInput("shop"));
    createAppCommand({ db, log: logger }, appInput("blog", { tenant: "acme", branch: "prod" }));
    release(db, shop.uuid);
    const v2 = release(db, shop.uuid, "localhost/img:2");
    const queued = await deployCommand({ db, log: logger, queue: new FakeJobQueue() }, { app: "shop" });

    const list = listAppsCommand({ db });
    expect(list).toEqual([
      {
        uuid: shop.uuid,
        slug: "shop",
        tenant: "default",
        domain: "shop.example.com",
        branch: "main",
        currentRelease: { uuid: v2.uuid, version: 2 },
        lastDeployment: { uuid: queued.deployment.uuid, status: "queued", createdAt: expect.any(Date) },
      },
      expect.objectContaining({
        slug: "blog",
        tenant: "acme",
        branch: "prod",
        currentRelease: null,
        lastDeployment: null,
      }),
    ]);
    expect(JSON.stringify(list)).not.toMatch(/"id"|appId|tenantId/);
  });

  it("uses the same number of queries for 1 app as for 5 (no N+1)", () => {
    const dir = tempDir();
    cleanups.push(dir.cleanup);
    let counting = false;
    let queries = 0;
    const db = openDb(join(dir.path, "db.sqlite3"), {
      onQuery: () => {
        if (counting) queries += 1;
      },
    });
    cleanups.unshift(() => db.$client.close());
    const { logger } = memoryLogger("silent");
    const countList = () => {
      queries = 0;
      counting = true;
      const list = listAppsCommand({ db });
      counting = false;
      return { queries, list };
    };

    const first = createAppCommand({ db, log: logger }, appInput("app-0"));
    release(db, first.uuid);
    const one = countList();
    expect(one.list).toHaveLength(1);

    for (let i = 1; i < 5; i++) {
      const app = createAppCommand({ db, log: logger }, appInput(`app-${i}`));
      release(db, app.uuid);
      release(db, app.uuid);
    }
    const five = countList();
    expect(five.list).toHaveLength(5);
    expect(five.list.every((a) => a.currentRelease !== null && a.lastDeployment?.status === "succeeded")).toBe(true);
    expect(one.queries).toBeGreaterThan(0);
    expect(five.queries).toBe(one.queries);
    expect(five.queries).toBeLessThanOrEqual(3);
  });
});

describe("statusCommand and releasesCommand", () => {
  it("returns the app, its current release and its latest deployments, newest first", () => {
    const { db, logger } = setup();
    const app = createAppCommand({ db, log: logger }, appInput("shop"));
    release(db, app.uuid);
    const v2 = release(db, app.uuid, "localhost/img:2");
    const status = statusCommand({ db }, { app: "shop" });
    expect(status.app.uuid).toBe(app.uuid);
    expect(status.currentRelease?.uuid).toBe(v2.uuid);
    expect(status.deployments.map((d) => d.uuid)).toEqual([v2.deploymentUuid, expect.any(String)]);

    expect(releasesCommand({ db }, { app: "shop" }).releases.map((r) => r.version)).toEqual([2, 1]);
  });

  it("answers 404 for an unknown app", () => {
    const { db } = setup();
    expect(domainError(() => statusCommand({ db }, { app: "nope" })).message).toBe("app nope not found");
    expect(domainError(() => releasesCommand({ db }, { app: "nope" })).status).toBe(404);
  });
});

describe("logsCommand", () => {
  async function withContainer() {
    const { db, logger } = setup();
    const app = createAppCommand({ db, log: logger }, appInput("shop"));
    release(db, app.uuid, "localhost/img:1");
    const v2 = release(db, app.uuid, "localhost/img:2");
    const engine = new FakeEngine();
    engine.addImage("localhost/img:2");
    const name = names.container(app.uuid, v2.deploymentUuid);
    await engine.runContainer({
      name,
      image: "localhost/img:2",
      command: ["web"],
      labels: {},
      memoryMb: 256,
      cpus: 0.5,
      pidsLimit: 64,
      network: "none",
      allowEgress: false,
      tmpfsMb: 64,
    });
    return { db, engine, name, v2 };
  }

  it("reads the container of the current release", async () => {
    const { db, engine, name, v2 } = await withContainer();
    const logs = await logsCommand({ db, engine }, { app: "shop", lines: 50 });
    expect(logs.text).toBe(`${name} log line\n`);
    expect(logs.release.uuid).toBe(v2.uuid);
    expect(engine.calls.filter(([m]) => m === "containerLogs")).toEqual([["containerLogs", name]]);
  });

  it("reads any process type's container and replica the release runs, and names them when asked for another", async () => {
    const { db, logger } = setup();
    const app = createAppCommand({ db, log: logger }, appInput("shop"));
    const { deployment } = requestDeployment(db, { appUuid: app.uuid, trigger: "cli", ref: "main" });
    claimDeployment(db, deployment.uuid);
    recordRelease(db, {
      deploymentUuid: deployment.uuid,
      image: "localhost/img:1",
      commitSha: null,
      startCommand: "web",
      processes: { worker: "celery worker" },
    });
    finishDeployment(db, deployment.uuid, "succeeded");
    setAppFormation(db, app.uuid, { web: 2, worker: 2 });
    const engine = new FakeEngine();
    engine.addImage("localhost/img:1");
    for (const [type, index] of [
      ["web", 1],
      ["web", 2],
      ["worker", 1],
      ["worker", 2],
    ] as const) {
      await engine.runContainer({
        name: names.container(app.uuid, deployment.uuid, type, index),
        image: "localhost/img:1",
        command: [type],
        labels: {},
        memoryMb: 256,
        cpus: 0.5,
        pidsLimit: 64,
        network: "none",
        allowEgress: false,
        tmpfsMb: 64,
      });
    }
    const read = (source: { process?: string; replica?: number }) =>
      logsCommand({ db, engine }, { app: "shop", lines: 10, ...source });
    const worker2 = names.container(app.uuid, deployment.uuid, "worker", 2);
    engine.logOutput.set(worker2, "task received\n");
    expect(await read({ process: "worker", replica: 2 })).toMatchObject({
      process: "worker",
      replica: 2,
      text: "task received\n",
    });
    await read({ replica: 2 });
    await read({});
    expect(engine.calls.filter(([m]) => m === "containerLogs").map(([, n]) => n)).toEqual([
      worker2,
      names.container(app.uuid, deployment.uuid, "web", 2),
      names.container(app.uuid, deployment.uuid, "web", 1),
    ]);
    await expect(read({ process: "beat" })).rejects.toThrow(
      "shop v1 runs no beat.1 (it runs: web.1, web.2, worker.1, worker.2)",
    );
    await expect(read({ process: "worker", replica: 3 })).rejects.toMatchObject({ status: 404 });
    await expect(read({ process: "../x" })).rejects.toMatchObject({ status: 422 });
  });

  it("says so when the app has no release yet", async () => {
    const { db, logger } = setup();
    createAppCommand({ db, log: logger }, appInput("shop"));
    await expect(logsCommand({ db, engine: new FakeEngine() }, { app: "shop", lines: 10 })).rejects.toThrow(
      "app shop has no release yet",
    );
  });

  it("turns a missing container into a 404 domain error, and leaves other engine errors alone", async () => {
    const { db, engine } = await withContainer();
    engine.containerLogs = async () => {
      throw new PodmanError("logs", "not_found", 125, "no such container");
    };
    const gone = logsCommand({ db, engine }, { app: "shop", lines: 10 });
    await expect(gone).rejects.toBeInstanceOf(DomainError);
    await expect(gone).rejects.toThrow("the web.1 container of shop v2 is gone");
    engine.containerLogs = async () => {
      throw new PodmanError("logs", "engine", 125, "boom");
    };
    await expect(logsCommand({ db, engine }, { app: "shop", lines: 10 })).rejects.toBeInstanceOf(PodmanError);
  });
});
