import { open } from "node:fs/promises";

/**
 * Reading a container's log file (podman's `k8s-file` driver, the one runContainerArgs selects) ourselves, instead of
 * `podman logs --tail N`.
 *
 * Why: conmon writes what it read in one go as one record, `<time> <stream> <P|F> <text>`, "P" for a piece of a line
 * whose end has not come yet. Python writes a `SystemExit("…")` message and its newline in two writes, `print()`
 * likewise, so a dying app's last line is often a "P" record followed by an empty "F" one. podman 4.3.1's
 * `logs --tail` drops those pieces: measured here with `raise SystemExit("boom: missing DATABASE_URL")` under runsc,
 * `podman logs` showed the message and `podman logs --tail 40` showed an empty line in about half the runs (a
 * deployment's "Log tail" came out empty). Rejoining the pieces here gives every line, in the order it was written,
 * stdout and stderr interleaved as they happened.
 */

/** The end of a 10 MiB log is all we ever show; a few hundred KiB hold thousands of lines. */
export const LOG_READ_BYTES = 256 * 1024;

const RECORD = /^\S+ (stdout|stderr) ([PF]) ?(.*)$/;

/** The last `lines` lines of k8s-file log text; `fromStart` false drops the first line (a read began inside it). */
export function tailK8sFileLog(text: string, lines: number, fromStart = true): string {
  const records = text.split("\n");
  if (!fromStart) records.shift();
  const out: string[] = [];
  const pending = new Map<string, string>();
  for (const record of records) {
    const m = RECORD.exec(record);
    if (!m) continue;
    const [, stream = "", tag, body = ""] = m;
    const joined = (pending.get(stream) ?? "") + body;
    if (tag === "P") {
      pending.set(stream, joined);
      continue;
    }
    pending.delete(stream);
    out.push(joined);
  }
  // A piece whose line never ended (the app died mid-line) is still what it said last.
  for (const rest of pending.values()) if (rest !== "") out.push(rest);
  const n = Math.max(0, Math.floor(lines));
  return n === 0
    ? ""
    : out
        .slice(-n)
        .map((l) => `${l}\n`)
        .join("");
}

/** The last `maxBytes` of a file, and whether that is the whole file. */
export async function readFileTail(path: string, maxBytes = LOG_READ_BYTES): Promise<{ text: string; whole: boolean }> {
  const file = await open(path, "r");
  try {
    const { size } = await file.stat();
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    const { bytesRead } = await file.read(buf, 0, length, size - length);
    return { text: buf.subarray(0, bytesRead).toString("utf8"), whole: length === size };
  } finally {
    await file.close();
  }
}
