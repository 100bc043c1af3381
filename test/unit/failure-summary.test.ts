import { describe, expect, it } from "vitest";
import { CaddyAdminError } from "../../src/infra/caddy.ts";
import { PodmanError } from "../../src/infra/container-engine.ts";
import { describeInfraFailure, oneLineCause, redactHostDetails } from "../../src/infra/failure-summary.ts";
import { GitError } from "../../src/infra/git-url.ts";
import { CommandError } from "../../src/infra/runner.ts";

describe("describeInfraFailure", () => {
  it("carries podman's own message when it exits 125, trimmed to one line", () => {
    const err = new PodmanError(
      "run",
      "engine",
      125,
      'Trying to pull docker.io/library/x...\nError: short-name "x" did not resolve to an alias and no unqualified-search registries are defined in "/etc/containers/registries.conf"\n',
    );
    expect(describeInfraFailure(err)).toBe(
      'podman run exited 125: short-name "x" did not resolve to an alias and no unqualified-search registries are defined in "<path>"',
    );
  });

  it("reads logrus-style lines, prefers the last error line and hides paths and container ids", () => {
    const stderr = [
      'time="2026-12-01T18:00:00Z" level=warning msg="cgroupv2 manager is set to systemd"',
      'time="2026-12-01T18:00:01Z" level=error msg="runsc: creating container 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef: open /run/runsc/state.json: permission denied"',
      "some trailing noise",
    ].join("\n");
    expect(oneLineCause(stderr)).toBe("runsc: creating container <id>: open <path>: permission denied");
    expect(redactHostDetails("image 3f2a9c1b0d4e is in use by /var/lib/containers/storage/overlay")).toBe(
      "image <id> is in use by <path>",
    );
  });

  it("bounds the cause and falls back to the exit code when podman printed nothing", () => {
    const long = new PodmanError("build", "engine", 125, `Error: ${"x".repeat(500)}`);
    const text = describeInfraFailure(long) ?? "";
    expect(text.startsWith("podman build exited 125: xxx")).toBe(true);
    expect(text.length).toBeLessThanOrEqual("podman build exited 125: ".length + 200);
    expect(text).not.toContain("\n");
    expect(describeInfraFailure(new PodmanError("start", "engine", 255, ""))).toBe("podman start exited 255");
    expect(describeInfraFailure(new PodmanError("build", "timeout", undefined, "whatever"))).toBe(
      "podman build timed out",
    );
  });

  it("names the other adapters' components; anything else is not described", () => {
    expect(describeInfraFailure(new GitError("timeout", "timed out"))).toBe("git: timed out (timeout)");
    expect(describeInfraFailure(new CaddyAdminError("network", "admin API unreachable"))).toBe(
      "caddy admin API: admin API unreachable",
    );
    expect(describeInfraFailure(new CommandError("/usr/sbin/nft", "exit", 1, "Error: No such file or directory"))).toBe(
      "nft exited 1: No such file or directory",
    );
    expect(describeInfraFailure(new Error("boom"))).toBeUndefined();
  });
});
