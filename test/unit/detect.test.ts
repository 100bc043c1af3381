import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TenantError } from "../../src/pipeline/errors.ts";
import { buildScript, detectBuildPlan, procfileWeb, pyprojectWeb } from "../../src/pipeline/stages/detect.ts";

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});
function repo(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "tsl-detect-"));
  dirs.push(dir);
  for (const [name, content] of Object.entries(files)) writeFileSync(join(dir, name), content);
  return dir;
}

describe("build plan detection", () => {
  it("prefers uv.lock, then requirements.txt, then a bare pyproject", async () => {
    const proc = { Procfile: "web: gunicorn app:app\n" };
    expect((await detectBuildPlan(repo({ ...proc, "pyproject.toml": "", "uv.lock": "" }))).installer).toBe("uv-lock");
    expect((await detectBuildPlan(repo({ ...proc, "requirements.txt": "flask" }))).installer).toBe("requirements");
    expect((await detectBuildPlan(repo({ ...proc, "pyproject.toml": "" }))).installer).toBe("pyproject");
  });

  it("takes the start command from Procfile, else from [tool.tussilago]", async () => {
    expect(procfileWeb("worker: celery\nweb:   gunicorn app:app  \n")).toBe("gunicorn app:app");
    const toml =
      '[project]\nname="x"\n[tool.tussilago]\nweb = "uvicorn main:app --port $PORT" # comment\n[tool.other]\nweb="no"\n';
    expect(pyprojectWeb(toml)).toBe("uvicorn main:app --port $PORT");
    expect(pyprojectWeb("[tool.tussilago]\nweb = 'python app.py'\n")).toBe("python app.py");
    const plan = await detectBuildPlan(repo({ "pyproject.toml": toml, "uv.lock": "" }));
    expect(plan.startCommand).toBe("uvicorn main:app --port $PORT");
  });

  it("fails clearly (a tenant error) without a start command or a Python project", async () => {
    await expect(detectBuildPlan(repo({ "pyproject.toml": "" }))).rejects.toThrow(/no start command/);
    await expect(detectBuildPlan(repo({ "README.md": "" }))).rejects.toBeInstanceOf(TenantError);
    await expect(detectBuildPlan(repo({ "requirements.txt": "", Procfile: "web: echo \u0007bell\n" }))).rejects.toThrow(
      /printable/,
    );
  });

  it("a symlinked or oversized Procfile is a tenant error naming the file, not a crash", async () => {
    const dir = repo({ "requirements.txt": "flask" });
    symlinkSync("/etc/shadow", join(dir, "Procfile"));
    const err = await detectBuildPlan(dir).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(TenantError);
    expect((err as Error).message).toBe("Procfile is a symbolic link; it must be a regular file in the repository");
    await expect(
      detectBuildPlan(repo({ "requirements.txt": "flask", Procfile: `web: x\n${"#".repeat(300 * 1024)}` })),
    ).rejects.toThrow("Procfile is larger than 256 KiB");
  });

  it("build scripts are ours: uv sync --frozen for a lock, uv pip for requirements", () => {
    expect(buildScript("uv-lock")).toContain("uv sync --frozen --no-dev");
    expect(buildScript("requirements")).toContain("uv pip install --python /app/.venv/bin/python -r requirements.txt");
    expect(buildScript("pyproject")).toMatch(/uv sync --no-dev/);
  });
});
