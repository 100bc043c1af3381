import { isAbsolute } from "node:path";
import { type DoctorSettings, doctorExitCode, runDoctor } from "../../commands/doctor.ts";
import type { Check } from "../../commands/doctor-verdicts.ts";
import { ConfigError, defaultDataDir, type Env, loadConfig } from "../config.ts";
import { RealHostProbe } from "../infra/host-probe.ts";
import { ExecaRunner } from "../infra/runner.ts";
import { DEFAULT_PYTHON, DEFAULT_PYTHON_IMAGES } from "../lib/python-images.ts";
import { createLogger } from "../log.ts";
import { escapeTerminal, json, type Output } from "./output.ts";

const PLACEHOLDER_SECRET = "doctor-placeholder-not-a-real-secret-key";

/**
 * The bot's configuration as loadConfig reads it, so the doctor checks exactly what the bot would use. When it
 * does not load, every error is kept for the configuration line and the checks go on with the variable at fault
 * dropped (its default) or, for a missing one, a placeholder: one typo must not hide the rest of the report.
 */
export function doctorSettings(env: Env): DoctorSettings {
  const errors: string[] = [];
  let current: Record<string, string | undefined> = { ...env };
  for (let attempt = 0; attempt < 20; attempt++) {
    try {
      const config = loadConfig(current);
      return {
        dataDir: config.dataDir,
        baseImage: config.pipeline.baseImage,
        appRedisImage: config.tenantStores.redisMode === "private" ? config.tenantStores.appRedisImage : undefined,
        runscNetwork: config.pipeline.runscNetwork,
        caddyAdmin: config.caddyAdmin,
        redisUrl: config.redisUrl,
        // A placeholder credential would only produce a second, misleading failure.
        slack:
          config.slack === undefined || errors.some((e) => e.startsWith("SLACK_"))
            ? undefined
            : { botToken: config.slack.botToken, apiUrl: config.slack.apiUrl ?? "https://slack.com/api" },
        github:
          config.github === undefined || errors.some((e) => e.startsWith("GITHUB_"))
            ? undefined
            : { apiUrl: config.github.apiUrl, auth: config.github.auth },
        configError: errors.length === 0 ? undefined : errors.join("; "),
      };
    } catch (err) {
      if (!(err instanceof ConfigError)) throw err;
      errors.push(err.message);
      const unset = (current[err.variable] ?? "").trim() === "";
      current = { ...current, [err.variable]: unset ? PLACEHOLDER_SECRET : undefined };
    }
  }
  const dataDir = env.TUSSILAGO_DATA_DIR;
  return {
    dataDir: dataDir !== undefined && isAbsolute(dataDir) ? dataDir : defaultDataDir(),
    baseImage: DEFAULT_PYTHON_IMAGES[DEFAULT_PYTHON] ?? "",
    runscNetwork: "host",
    caddyAdmin: undefined,
    redisUrl: undefined,
    slack: undefined,
    github: undefined,
    configError: errors.join("; "),
  };
}

export function formatDoctor(checks: readonly Check[]): string {
  const nameWidth = Math.max(...checks.map((c) => c.name.length));
  const lines = checks.map((c) => {
    const fix = c.fix === undefined ? "" : ` — fix: ${c.fix}`;
    return `${c.verdict.padEnd(4)}  ${c.name.padEnd(nameWidth)}  ${escapeTerminal(c.found)}${escapeTerminal(fix)}`;
  });
  const count = (v: Check["verdict"]) => checks.filter((c) => c.verdict === v).length;
  const summary = `${count("FAIL")} failed, ${count("WARN")} warnings, ${count("PASS")} passed, ${count("SKIP")} skipped`;
  return `${lines.join("\n")}\n${summary}\n`;
}

/** `tussilago doctor [--json]`: needs no database, Redis or secret key, so it runs before anything else opens. */
export async function runDoctorCli(command: { json: boolean }, env: Env, output: Output): Promise<number> {
  const settings = doctorSettings(env);
  const log = createLogger({ level: "warn", destination: { write: (line: string) => output.err(line) } });
  const probe = new RealHostProbe(new ExecaRunner(log), env.PATH ?? "");
  const checks = await runDoctor(settings, probe);
  output.out(command.json ? json({ ok: doctorExitCode(checks) === 0, checks }) : formatDoctor(checks));
  return doctorExitCode(checks);
}
