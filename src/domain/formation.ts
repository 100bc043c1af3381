import { invalidError } from "./errors.ts";

/**
 * The formation: how many containers of each process type an app runs (docs/python-apps.md, "Scale"). Stored per
 * app (apps.formation), applied at once by `tussilago scale` and by every later deployment. A type the formation
 * does not name runs one container; `web` never goes below one (the route needs an upstream).
 */
export type Formation = Readonly<Record<string, number>>;

/** Caddy route upstreams are capped at 16 (src/infra/caddy-config.ts); other types share the cap for symmetry. */
export const MAX_REPLICAS = 16;
const TYPE = /^[a-z][a-z0-9_]{0,29}$/;

export function replicasOf(formation: Formation | null | undefined, type: string): number {
  const n = formation?.[type];
  return n === undefined ? 1 : n;
}

/** Every process type of a release with its command: `web` first, then the others by name. */
export function releaseCommands(release: {
  startCommand: string;
  processes: Readonly<Record<string, string>>;
}): Array<{ type: string; command: string }> {
  const others = Object.keys(release.processes)
    .filter((t) => t !== "web")
    .sort()
    .map((type) => ({ type, command: release.processes[type] ?? "" }));
  return [{ type: "web", command: release.startCommand }, ...others];
}

export interface WantedContainer {
  type: string;
  /** 1-based. */
  index: number;
  command: string;
}

/** The containers a release runs under a formation, in start order (web first). */
export function wantedContainers(
  release: { startCommand: string; processes: Readonly<Record<string, string>> },
  formation: Formation | null | undefined,
): WantedContainer[] {
  return releaseCommands(release).flatMap(({ type, command }) =>
    Array.from({ length: replicasOf(formation, type) }, (_, i) => ({ type, index: i + 1, command })),
  );
}

/**
 * `web=3 worker=2` → `{ web: 3, worker: 2 }`: counts 0–16 (web 1–16), each type once. 422 with the reason otherwise.
 */
export function parseScaleArgs(args: readonly string[]): Record<string, number> {
  if (args.length === 0) throw invalidError("name at least one process type and its count, e.g. web=2 worker=1");
  const out: Record<string, number> = {};
  for (const arg of args) {
    const m = /^([^=]+)=([0-9]{1,3})$/.exec(arg);
    if (!m?.[1] || m[2] === undefined) throw invalidError(`"${arg.slice(0, 40)}" is not TYPE=COUNT (e.g. web=2)`);
    const [, type, digits] = m;
    if (!TYPE.test(type)) throw invalidError(`"${type.slice(0, 40)}" is not a process type name`);
    if (Object.hasOwn(out, type)) throw invalidError(`${type} is named twice`);
    const count = Number(digits);
    if (count > MAX_REPLICAS) throw invalidError(`${type}=${count}: at most ${MAX_REPLICAS} containers per type`);
    if (type === "web" && count < 1) throw invalidError("web=0: an app serves through at least one web container");
    out[type] = count;
  }
  return out;
}

/** "web ×2, worker ×1": for progress lines and status. */
export function describeCounts(counts: Readonly<Record<string, number>>): string {
  return Object.entries(counts)
    .map(([type, n]) => `${type} ×${n}`)
    .join(", ");
}

/** Whether `name` can be a process type (`web`, `worker`, `celery_beat`): what Procfile names the pipeline accepts. */
export function isProcessType(name: string): boolean {
  return TYPE.test(name);
}
