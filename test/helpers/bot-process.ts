import { type ChildProcess, spawn } from "node:child_process";
import { once } from "node:events";
import { createInterface } from "node:readline";

/** The bot started for real (`node src/main.ts`) as a child process, with its JSON log lines collected. */
export interface BotProcess {
  child: ChildProcess;
  url: string;
  lines: Record<string, unknown>[];
  /** Everything the process wrote to stderr so far (the bot logs JSON to stdout; stderr should stay empty). */
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export async function startBotProcess(env: Record<string, string>, timeoutMs = 60_000): Promise<BotProcess> {
  const child = spawn(process.execPath, ["src/main.ts"], {
    env: { PATH: process.env.PATH ?? "", HOME: process.env.HOME ?? "/tmp", LOG_LEVEL: "debug", PORT: "0", ...env },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const lines: Record<string, unknown>[] = [];
  let stderr = "";
  child.stderr?.on("data", (d: Buffer) => {
    stderr += d.toString();
  });
  const exit = once(child, "exit").then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`bot did not start in ${timeoutMs} ms; stderr: ${stderr}`)),
      timeoutMs,
    );
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      try {
        const parsed = JSON.parse(line) as Record<string, unknown>;
        lines.push(parsed);
        if (parsed.msg === "tussilago bot listening") {
          clearTimeout(timer);
          resolve(String(parsed.url));
        }
      } catch {
        lines.push({ raw: line });
      }
    });
    void exit.then(({ code }) => {
      clearTimeout(timer);
      reject(new Error(`bot exited with ${code} before listening; stderr: ${stderr}`));
    });
  });
  return { child, url, lines, stderr: () => stderr, exit };
}

export { isAlive } from "./fixtures.ts";
