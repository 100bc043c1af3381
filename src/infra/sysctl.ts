import { readFile } from "node:fs/promises";

/** Reads a kernel setting (`net.ipv4.tcp_migrate_req`); undefined where /proc does not have it. */
export async function readSysctl(name: string): Promise<string | undefined> {
  if (!/^[a-z0-9_.]+$/.test(name)) throw new Error(`invalid sysctl name: ${name}`);
  try {
    return (await readFile(`/proc/sys/${name.replaceAll(".", "/")}`, "utf8")).trim();
  } catch {
    return undefined;
  }
}
