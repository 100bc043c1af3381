import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { readFileTail, tailK8sFileLog } from "../../src/infra/container-log.ts";
import { tempDir } from "../helpers/fixtures.ts";

const T = "2026-12-01T16:13:48.409162086+00:00";

describe("tailK8sFileLog", () => {
  it("rejoins partial records: the SystemExit message conmon split from its newline is kept (podman logs --tail lost it)", () => {
    // Verbatim shape of a runsc container's log after `print("first line"); raise SystemExit("boom: …")`.
    const text = [
      `${T} stdout P first line`,
      `${T} stdout F `,
      `${T} stderr P boom: missing DATABASE_URL`,
      `${T} stderr F `,
      "",
    ].join("\n");
    expect(tailK8sFileLog(text, 40)).toBe("first line\nboom: missing DATABASE_URL\n");
  });

  it("keeps stdout and stderr in the order written, joins pieces per stream, and keeps an unfinished last line", () => {
    const text = [
      `${T} stdout P a`,
      `${T} stderr F e1`,
      `${T} stdout P b`,
      `${T} stdout F c`,
      `${T} stderr P dying mid-`,
      "",
    ].join("\n");
    expect(tailK8sFileLog(text, 40)).toBe("e1\nabc\ndying mid-\n");
  });

  it("returns only the last N lines and skips a first record cut by a read from the middle", () => {
    const text = ["ut F cut", `${T} stdout F 1`, `${T} stdout F 2`, `${T} stdout F 3`, ""].join("\n");
    expect(tailK8sFileLog(text, 2, false)).toBe("2\n3\n");
    expect(tailK8sFileLog(text, 10, false)).toBe("1\n2\n3\n");
    expect(tailK8sFileLog("", 10)).toBe("");
  });
});

describe("readFileTail", () => {
  it("reads the whole small file, or only its end", async () => {
    const dir = tempDir("tsl-log-");
    try {
      const path = join(dir.path, "ctr.log");
      writeFileSync(path, "0123456789");
      expect(await readFileTail(path, 100)).toEqual({ text: "0123456789", whole: true });
      expect(await readFileTail(path, 4)).toEqual({ text: "6789", whole: false });
    } finally {
      dir.cleanup();
    }
  });
});
