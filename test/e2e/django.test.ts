import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { statusCommand } from "../../commands/status.ts";
import {
  DEFAULT_ROLE_LIMITS,
  dropTenantStore,
  provisionTenantStore,
  type TenantStoreDeps,
  tenantStoreNames,
} from "../../src/domain/tenant-databases.ts";
import { PgPostgresAdmin } from "../../src/infra/postgres-admin.ts";
import type { StageEvent } from "../../src/pipeline/events.ts";
import { buildPythonImages, type E2EPipeline, startE2EPipeline } from "../helpers/e2e-pipeline.ts";
import { type Bouncer, freePortOn, hostIpv4, startPgBouncer, TEST_PG_ADMIN_URL } from "../helpers/stores.ts";

// A Django 6 app on Python 3.14 (uv.lock, `release: python manage.py migrate --noinput`, `web: gunicorn …`,
// `[tool.tussilago] build = "python manage.py collectstatic --noinput"`) with a tenant PostgreSQL database reached
// through a real PgBouncer in transaction pooling mode, the way stores.test.ts reaches it from the sandbox.
const HOST = "django.e2e.test";
const HOST_IP = hostIpv4();

let p: E2EPipeline;
let bouncer: Bouncer;
let stores: TenantStoreDeps;
let appUuid: string;
let repo: string;
const stageEvents: StageEvent[] = [];

async function page(): Promise<Record<string, unknown>> {
  const res = await p.get(HOST, "/");
  expect(res.status, res.body).toBe(200);
  return JSON.parse(res.body) as Record<string, unknown>;
}

beforeAll(async () => {
  await buildPythonImages(["3.14"]);
  const pgPort = await freePortOn(HOST_IP);
  p = await startE2EPipeline({ appServices: [{ address: HOST_IP, port: pgPort }] });
  p.events.subscribe((e) => {
    if (e.type === "stage") stageEvents.push(e);
  });
  bouncer = await startPgBouncer(HOST_IP, pgPort);
  stores = {
    db: p.db,
    secrets: p.deps.secrets,
    log: p.log,
    postgres: new PgPostgresAdmin({ adminUrl: TEST_PG_ADMIN_URL, log: p.log }),
    redisAcl: undefined,
    settings: {
      postgres: { publicHost: HOST_IP, publicPort: pgPort, limits: DEFAULT_ROLE_LIMITS },
      redis: undefined,
    },
  };
  repo = await p.repo("django-app", "1");
  // Django with two gunicorn workers under gVisor wants more than the 256 MB default.
  const app = p.createApp("django", repo, { memoryMb: 512, cpus: "1.0" });
  appUuid = app.uuid;
  await provisionTenantStore(stores, appUuid, "postgres");
}, 900_000);

afterAll(async () => {
  if (appUuid) await dropTenantStore(stores, appUuid, "postgres").catch(() => undefined);
  await stores?.postgres?.close();
  await bouncer?.stop();
  await p?.close();
}, 120_000);

describe("a Django 6 app on Python 3.14", () => {
  it("deploys: the release phase migrates through PgBouncer, and the page reads the row the migration wrote", async () => {
    const d = await p.deploy("django");
    expect(d.status, d.failureReason ?? "").toBe("succeeded");
    expect(d.stageTimings.release?.status).toBe("succeeded");
    expect(d.pythonVersion).toBe("3.14");
    const body = await page();
    expect(body).toEqual({
      release: "1",
      notes: ["written by migration 0002"],
      python: "3.14",
      db_user: tenantStoreNames(appUuid).pg,
      static: true,
    });
    const build = stageEvents.find(
      (e) => e.deploymentUuid === d.uuid && e.stage === "build" && e.status === "succeeded",
    );
    expect(build?.excerpt).toContain("Python 3.14 (.python-version)");
    const status = statusCommand({ db: p.db }, { app: "django" });
    expect(status.currentRelease?.pythonVersion).toBe("3.14");
    expect(status.currentRelease?.releaseCommand).toBe("python manage.py migrate --noinput");
  });

  it("a failing migration stops the deployment before anything switches; the previous release still serves", async () => {
    const path = new URL(repo).pathname;
    writeFileSync(
      join(path, "notes", "migrations", "0003_boom.py"),
      [
        "from django.db import migrations",
        "",
        "",
        "class Migration(migrations.Migration):",
        '    dependencies = [("notes", "0002_seed")]',
        '    operations = [migrations.RunSQL("SELECT 1/0")]',
        "",
      ].join("\n"),
    );
    writeFileSync(join(path, "RELEASE"), "2\n");
    await p.git(path, ["add", "-A"]);
    await p.git(path, ["commit", "-q", "-m", "a migration that fails"]);

    const d = await p.deploy("django");
    expect(d.status).toBe("failed");
    expect(d.failureReason).toBe(
      "the release command failed (exit 1); nothing was switched, the previous release keeps serving",
    );
    expect(d.stageTimings.release?.status).toBe("failed");
    expect(d.stageTimings.run).toBeUndefined();
    const failed = stageEvents.find(
      (e) => e.deploymentUuid === d.uuid && e.stage === "release" && e.status === "failed",
    );
    expect(failed?.excerpt).toContain("division by zero");

    // Nothing of the new release runs; the old one answers every request.
    const containers = await p.engine.listContainers({ "io.tussilago.deployment": d.uuid });
    expect(containers).toEqual([]);
    for (let i = 0; i < 20; i++) {
      expect(await page()).toMatchObject({ release: "1", notes: ["written by migration 0002"] });
    }
    expect(statusCommand({ db: p.db }, { app: "django" }).currentRelease?.version).toBe(1);
  });
});
