import { mkdir, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createApp } from "../../src/domain/apps.ts";
import { getDeployment, requestDeployment } from "../../src/domain/deployments.ts";
import { GitCli } from "../../src/infra/git.ts";
import { ExecaRunner } from "../../src/infra/runner.ts";
import { runDeployment } from "../../src/pipeline/deploy-job.ts";
import { names } from "../../src/pipeline/settings.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";
import { FLASK_FILES, type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

/**
 * Files of the repository are hostile input (docs/security.md, "Repository files"): a real git repository whose
 * Procfile is a committed symlink to a host file, fetched by the real GitCli, then run through the deployment
 * stage machine with fake engine and proxy. The deployment fails with a clear tenant message, at once (no retry),
 * the live release keeps its container and route, and the next deployment works.
 */

const log = memoryLogger("silent").logger;
const runner = new ExecaRunner(log);
const GIT_ENV = {
  GIT_CONFIG_NOSYSTEM: "1",
  GIT_CONFIG_GLOBAL: "/dev/null",
  GIT_AUTHOR_NAME: "Mallory",
  GIT_AUTHOR_EMAIL: "mallory@example.com",
  GIT_COMMITTER_NAME: "Mallory",
  GIT_COMMITTER_EMAIL: "mallory@example.com",
};
const git = (cwd: string, ...args: string[]) => runner.run("git", args, { cwd, env: GIT_ENV, timeoutMs: 10_000 });

let f: PipelineFixture;
let scratch: { path: string; cleanup: () => void };
beforeEach(() => {
  f = pipelineFixture();
  scratch = tempDir("tussilago-hostile-repo-");
});
afterEach(() => {
  f.cleanup();
  scratch.cleanup();
});

/** Branch `main`: a good Flask app; one more branch per hostile variant, each with Procfile replaced by a symlink. */
async function hostileRepo(variants: Record<string, string>): Promise<string> {
  const dir = join(scratch.path, "repo");
  await mkdir(dir);
  await git(dir, "init", "-q", "-b", "main");
  for (const [name, content] of Object.entries(FLASK_FILES)) await writeFile(join(dir, name), content);
  await git(dir, "add", "-A");
  await git(dir, "commit", "-q", "-m", "good app");
  for (const [branch, target] of Object.entries(variants)) {
    await git(dir, "checkout", "-q", "-b", branch, "main");
    await git(dir, "rm", "-q", "Procfile");
    await symlink(target, join(dir, "Procfile"));
    await git(dir, "add", "-A");
    await git(dir, "commit", "-q", "-m", `Procfile -> ${target}`);
  }
  await git(dir, "checkout", "-q", "main");
  return dir;
}

describe("a repository whose Procfile is a symlink to a host file", () => {
  it("fails the deployment with a clear tenant message; the live release keeps serving", async () => {
    const repo = await hostileRepo({ shadow: "/etc/shadow", zero: "/dev/zero" });
    f.deps.git = new GitCli(runner, log, { allowFileUrls: true });
    const app = createApp(f.db, { slug: "hostile", gitUrl: `file://${repo}`, domain: "hostile.example.test" });
    const deploy = async (ref: string) => {
      const id = requestDeployment(f.db, { appUuid: app.uuid, trigger: "cli", ref }).deployment.uuid;
      // finalAttempt false: an infrastructure error would be rethrown for a retry instead of returning "failed".
      return { id, outcome: await runDeployment(f.deps, id, { finalAttempt: false }) };
    };

    const good = await deploy("main");
    expect(good.outcome).toBe("succeeded");
    const live = names.container(app.uuid, good.id);
    const routeBefore = structuredClone(f.proxy.routes.get(`app-${app.uuid}`));

    for (const branch of ["shadow", "zero"]) {
      const bad = await deploy(branch);
      expect(bad.outcome).toBe("failed");
      expect(getDeployment(f.db, bad.id).failureReason).toBe(
        "Procfile is a symbolic link; it must be a regular file in the repository",
      );
      expect([...f.engine.containers.keys()]).toEqual([live]);
      expect(f.proxy.routes.get(`app-${app.uuid}`)).toEqual(routeBefore);
    }
    // Nothing of /etc/shadow reached an event (Slack/GitHub reporters read these).
    expect(JSON.stringify(f.events)).not.toMatch(/root:/);

    const again = await deploy("main");
    expect(again.outcome).toBe("succeeded");
  });
});
