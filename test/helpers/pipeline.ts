import { join } from "node:path";
import type { Db } from "../../src/db/client.ts";
import { createApp } from "../../src/domain/apps.ts";
import { SecretBox } from "../../src/domain/crypto.ts";
import type { HealthProbe } from "../../src/infra/http-probe.ts";
import { AppLocks } from "../../src/pipeline/app-locks.ts";
import type { PipelineDeps } from "../../src/pipeline/deps.ts";
import { type PipelineEvent, PipelineEvents } from "../../src/pipeline/events.ts";
import { defaultBaseImage, defaultPipelineSettings } from "../../src/pipeline/settings.ts";
import { FakeDrains } from "./fake-drains.ts";
import { FakeEngine } from "./fake-engine.ts";
import { FakeGitSource } from "./fake-git.ts";
import { FakeProxyAdmin } from "./fake-proxy.ts";
import { memoryLogger, tempDb } from "./fixtures.ts";

export const GIT_URL = "https://git.example.test/acme/shop.git";
export const SHA = "a".repeat(40);

export const FLASK_FILES = {
  "pyproject.toml": '[project]\nname = "shop"\nversion = "0.1.0"\ndependencies = ["flask"]\n',
  "uv.lock": "version = 1\n",
  Procfile: "web: python -m flask --app app run --host 0.0.0.0 --port $PORT\n",
  "app.py": "from flask import Flask\napp = Flask(__name__)\n",
};

/**
 * A new uv.lock for the fixture's repository: the next deployment installs its dependencies again instead of reusing
 * the app's dependency layer (stages/deps-cache.ts).
 */
export function changeLock(git: FakeGitSource, marker: string): void {
  const repo = git.repos.get(GIT_URL);
  if (!repo) throw new Error("no fixture repository");
  repo.files = { ...repo.files, "uv.lock": `version = 1\n# ${marker}\n` };
}

/** A probe whose answers a test scripts: a number is a status, an Error a connection failure. */
export class ScriptedProbe implements HealthProbe {
  readonly urls: string[] = [];
  answers: Array<number | Error>;
  constructor(answers: Array<number | Error> = [200]) {
    this.answers = answers;
  }
  /** Checks through the proxy (a Host header given), with their own answer: is the app served right now? */
  readonly proxyChecks: Array<{ url: string; host: string }> = [];
  proxyAnswer: number | Error = 200;
  async get(url: string, _timeoutMs?: number, host?: string): Promise<number> {
    if (host !== undefined) {
      this.proxyChecks.push({ url, host });
      if (this.proxyAnswer instanceof Error) throw this.proxyAnswer;
      return this.proxyAnswer;
    }
    this.urls.push(url);
    const next = this.answers.length > 1 ? this.answers.shift() : this.answers[0];
    if (next instanceof Error) throw next;
    return next ?? 200;
  }
}

export interface PipelineFixture {
  db: Db;
  deps: PipelineDeps;
  engine: FakeEngine;
  proxy: FakeProxyAdmin;
  git: FakeGitSource;
  probe: ScriptedProbe;
  /** Runs each drain inside its add unless `inline` is turned off. */
  drains: FakeDrains;
  events: PipelineEvent[];
  app: ReturnType<typeof createApp>;
  cleanup: () => void;
}

export function pipelineFixture(): PipelineFixture {
  const t = tempDb();
  const engine = new FakeEngine();
  const settings = defaultPipelineSettings(t.dir);
  settings.workRoot = join(t.dir, "work");
  settings.cacheRoot = join(t.dir, "cache");
  settings.drainGraceMs = 0;
  settings.healthTimeoutMs = 5_000;
  engine.addImage(defaultBaseImage(settings));
  const proxy = new FakeProxyAdmin();
  const git = new FakeGitSource({
    [GIT_URL]: { files: FLASK_FILES, commitSha: SHA, message: "Add shop\n\nbody", author: "Ada" },
  });
  const probe = new ScriptedProbe();
  const seen: PipelineEvent[] = [];
  const events = new PipelineEvents();
  events.subscribe((e) => {
    seen.push(e);
  });
  let clock = 1_000_000;
  const drains = new FakeDrains(() => deps);
  const deps: PipelineDeps = {
    db: t.db,
    appLocks: new AppLocks(),
    drains,
    engine,
    proxy,
    git,
    probe,
    secrets: new SecretBox("test-secret-key-0123456789abcdefghij"),
    events,
    settings,
    log: memoryLogger("silent").logger,
    sleep: async (ms) => {
      clock += ms;
    },
    now: () => (clock += 5),
  };
  const app = createApp(t.db, { slug: "shop", gitUrl: GIT_URL, domain: "shop.example.test" });
  return { db: t.db, deps, engine, proxy, git, probe, drains, events: seen, app, cleanup: t.cleanup };
}
