import { chmod, mkdir, readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { PodmanEngine } from "../../src/infra/podman.ts";
import { CommandError, ExecaRunner } from "../../src/infra/runner.ts";
import { TenantError } from "../../src/pipeline/errors.ts";
import { buildStage } from "../../src/pipeline/stages/source-build.ts";
import { memoryLogger, tempDir } from "../helpers/fixtures.ts";
import { FLASK_FILES, type PipelineFixture, pipelineFixture } from "../helpers/pipeline.ts";

/**
 * Disk is a quota (docs/security.md, "Disk"): a build that prints 64 MiB must not fill the bot's memory or disk,
 * nor look like infrastructure trouble (which would be retried). Real processes print for real here; only podman is
 * replaced by a script that behaves like `podman run` of a build printing without end.
 */

const log = memoryLogger("silent").logger;
const runner = new ExecaRunner(log);
const SIXTY_FOUR_MIB = 64 * 1024 * 1024;

let scratch: { path: string; cleanup: () => void };
beforeEach(() => {
  scratch = tempDir("tussilago-log-limit-");
});
afterEach(() => scratch.cleanup());

describe("the runner caps output while it streams", () => {
  it("kills a process printing 64 MiB once it passed the cap, and says why", async () => {
    let seen = 0;
    const err = await runner
      .run("head", ["-c", String(SIXTY_FOUR_MIB), "/dev/zero"], {
        timeoutMs: 60_000,
        onOutput: (chunk) => {
          seen += Buffer.byteLength(chunk);
        },
        maxStreamBytes: 1024 * 1024,
      })
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(CommandError);
    expect((err as CommandError).kind).toBe("output_limit");
    // Bounded by the cap plus what was already in the pipe, far from 64 MiB.
    expect(seen).toBeLessThan(4 * 1024 * 1024);
  });
});

describe("a build printing 64 MiB", () => {
  let f: PipelineFixture;
  beforeEach(() => {
    f = pipelineFixture();
  });
  afterEach(() => f.cleanup());

  it("fails as a tenant error, and the build container is removed", async () => {
    const calls = join(scratch.path, "calls");
    const podman = join(scratch.path, "podman");
    // `podman run` of the build prints 64 MiB; the base image is listed, the app's dependency layer does not exist
    // yet (so the install runs); everything else (rm, network exists/inspect) succeeds.
    await writeFile(
      podman,
      `#!/bin/sh
echo "$*" >> '${calls}'
for a in "$@"; do
  case "$a" in
    run) exec head -c ${SIXTY_FOUR_MIB} /dev/zero ;;
    inspect) echo "tsl0 10.89.0.1"; exit 0 ;;
    images) echo '[{"Id":"sha256:base"}]'; exit 0 ;;
    exists) case "$*" in *:deps-*) exit 1 ;; esac; exit 0 ;;
  esac
done
exit 0
`,
    );
    const nft = join(scratch.path, "nft");
    await writeFile(nft, "#!/bin/sh\ncat >/dev/null\n");
    await chmod(podman, 0o755);
    await chmod(nft, 0o755);
    f.deps.engine = new PodmanEngine(runner, log, { podmanPath: podman, nftPath: nft, stateDir: scratch.path });
    const srcDir = join(scratch.path, "src");
    await mkdir(srcDir);
    for (const [name, content] of Object.entries(FLASK_FILES)) await writeFile(join(srcDir, name), content);

    const err = await buildStage(f.deps, f.app, crypto.randomUUID(), srcDir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TenantError);
    expect((err as TenantError).message).toBe("the build printed more than 8 MiB of output");
    const lines = (await readFile(calls, "utf8")).trim().split("\n");
    const run = lines.findIndex((l) => / run /.test(l));
    expect(run).toBeGreaterThanOrEqual(0);
    // Killing the podman client does not stop an attached container: it is removed explicitly afterwards.
    expect(lines.slice(run + 1).some((l) => / rm --force /.test(l))).toBe(true);
  });
});
