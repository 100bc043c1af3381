import { mkdtempSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { TenantError } from "../../src/pipeline/errors.ts";
import { buildScript, detectBuildPlan, procfileWeb, pyprojectWeb } from "../../src/pipeline/stages/detect.ts";

/** What an operator offers here: Debian's 3.11, 3.13 and 3.14 (no suite ships 3.12). */
const OFFER = {
  images: { "3.11": "localhost/py:3.11", "3.13": "localhost/py:3.13", "3.14": "localhost/py:3.14" },
  defaultVersion: "3.14",
};
const WEB = { Procfile: "web: gunicorn shop.wsgi\n", "uv.lock": "" };

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

describe("Python version selection", () => {
  it(".python-version wins over requires-python and the default", async () => {
    const plan = await detectBuildPlan(
      repo({ ...WEB, ".python-version": "3.13\n", "pyproject.toml": '[project]\nrequires-python = ">=3.14"\n' }),
      OFFER,
    );
    expect(plan.python).toEqual({ version: "3.13", source: ".python-version" });
  });

  it("reads .python-version as uv and pyenv write it: patch releases and implementation prefixes", async () => {
    for (const text of ["3.11.9\n", "# pinned\ncpython-3.11\n", "cpython@3.11.2", "python3.11"]) {
      const plan = await detectBuildPlan(repo({ ...WEB, "pyproject.toml": "", ".python-version": text }), OFFER);
      expect(plan.python.version).toBe("3.11");
    }
  });

  it("a version no image provides fails at once, naming the versions on offer", async () => {
    const err = await detectBuildPlan(repo({ ...WEB, "pyproject.toml": "", ".python-version": "3.9\n" }), OFFER).catch(
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(TenantError);
    expect((err as TenantError).message).toBe(
      "Python 3.9 (from .python-version) is not available here; versions on offer: 3.14, 3.13, 3.11",
    );
    await expect(
      detectBuildPlan(repo({ ...WEB, "pyproject.toml": "", ".python-version": "3.12" }), OFFER),
    ).rejects.toThrow("Python 3.12 (from .python-version) is not available here; versions on offer: 3.14, 3.13, 3.11");
    await expect(
      detectBuildPlan(repo({ ...WEB, "pyproject.toml": "", ".python-version": "pypy\n" }), OFFER),
    ).rejects.toThrow(/\.python-version must name a version like 3\.14/);
  });

  it("requires-python picks the newest version on offer that satisfies it", async () => {
    const cases: Array<[string, string]> = [
      [">=3.12", "3.14"],
      [">=3.11,<3.14", "3.13"],
      ["~=3.11.0", "3.11"],
      ["==3.13.*", "3.13"],
      [">=3.11, !=3.14.*", "3.13"],
      ["<=3.11", "3.11"],
    ];
    for (const [spec, want] of cases) {
      const pyproject = `[project]\nname = "shop"\nrequires-python = "${spec}"\n\n[tool.other]\nrequires-python = "==2.7"\n`;
      const plan = await detectBuildPlan(repo({ ...WEB, "pyproject.toml": pyproject }), OFFER);
      expect(plan.python, spec).toEqual({ version: want, source: "requires-python" });
    }
  });

  it("requires-python that nothing on offer satisfies fails, naming the versions on offer", async () => {
    const pyproject = '[project]\nrequires-python = ">=3.15"\n';
    await expect(detectBuildPlan(repo({ ...WEB, "pyproject.toml": pyproject }), OFFER)).rejects.toThrow(
      'no Python here satisfies requires-python ">=3.15" (pyproject.toml); versions on offer: 3.14, 3.13, 3.11',
    );
    await expect(
      detectBuildPlan(repo({ ...WEB, "pyproject.toml": '[project]\nrequires-python = "^3.12"\n' }), OFFER),
    ).rejects.toThrow('requires-python: cannot read "^3.12"');
  });

  it("without either, the platform default", async () => {
    const plan = await detectBuildPlan(repo({ ...WEB, "pyproject.toml": '[project]\nname = "shop"\n' }), OFFER);
    expect(plan.python).toEqual({ version: "3.14", source: "default" });
  });

  it("the build script pins uv to the chosen interpreter", () => {
    expect(buildScript("uv-lock", "3.13")).toContain("UV_PYTHON=3.13");
    expect(() => buildScript("uv-lock", "3.13; rm -rf /")).toThrow();
  });
});

describe("release and build commands", () => {
  it("release: from the Procfile, else [tool.tussilago]; build: from [tool.tussilago]", async () => {
    const pyproject =
      '[project]\nname = "shop"\n\n[tool.tussilago]\nrelease = "python manage.py migrate"\nbuild = "python manage.py collectstatic --noinput"\n';
    const fromToml = await detectBuildPlan(repo({ ...WEB, "pyproject.toml": pyproject }), OFFER);
    expect(fromToml.releaseCommand).toBe("python manage.py migrate");
    expect(fromToml.buildCommand).toBe("python manage.py collectstatic --noinput");
    const procfile = "web: gunicorn shop.wsgi\nrelease: python manage.py migrate --noinput\n";
    const fromProcfile = await detectBuildPlan(
      repo({ ...WEB, Procfile: procfile, "pyproject.toml": pyproject }),
      OFFER,
    );
    expect(fromProcfile.releaseCommand).toBe("python manage.py migrate --noinput");
    const none = await detectBuildPlan(repo({ ...WEB, "pyproject.toml": "" }), OFFER);
    expect(none.releaseCommand).toBeUndefined();
    expect(none.buildCommand).toBeUndefined();
  });

  it("both are one printable line", async () => {
    await expect(
      detectBuildPlan(repo({ ...WEB, Procfile: "web: x\nrelease: migrate \u001b[2J\n", "pyproject.toml": "" }), OFFER),
    ).rejects.toThrow("the release command must be one line of printable ASCII");
  });

  it("the build command reaches our script only as an argument", () => {
    const script = buildScript("uv-lock", "3.14", true);
    expect(script).toContain('/bin/sh -c "$1"');
    expect(script).toContain("PATH=/app/.venv/bin:$PATH");
  });
});
