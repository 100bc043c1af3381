import type { DrainScheduler, PipelineDeps } from "../../src/pipeline/deps.ts";
import { runDrain } from "../../src/pipeline/drain-worker.ts";
import type { DrainJobData } from "../../src/pipeline/queues.ts";

/**
 * The drain queue in memory. `inline` (the fixture's default) runs each added drain to its end inside the add,
 * waiting its grace period out with the deps' `sleep`; otherwise drains stay pending until `runDue` runs them, as
 * the drain worker would when a delayed job's time has come.
 */
export class FakeDrains implements DrainScheduler {
  /** Every add, duplicates included. */
  readonly added: DrainJobData[] = [];
  /** Drains not over, by deployment: added and not run yet, or waiting out their grace period. */
  readonly pending = new Map<string, { data: DrainJobData; waitUntil?: number }>();
  inline = true;
  #deps: () => PipelineDeps;

  constructor(deps: () => PipelineDeps) {
    this.#deps = deps;
  }

  async schedule(data: DrainJobData): Promise<void> {
    this.added.push(data);
    if (this.pending.has(data.deploymentUuid)) return; // BullMQ ignores an add under an existing job id
    this.pending.set(data.deploymentUuid, { data });
    if (!this.inline) return;
    const deps = this.#deps();
    while ((await this.#run(data.deploymentUuid)) === "waiting") {
      const until = this.pending.get(data.deploymentUuid)?.waitUntil ?? 0;
      await deps.sleep(Math.max(0, until - deps.now()));
    }
  }

  async pendingApps(): Promise<Set<string>> {
    return new Set([...this.pending.values()].map((p) => p.data.appUuid));
  }

  /** One run of every pending drain whose time has come (`now`: the deps' clock unless given). */
  async runDue(now = this.#deps().now()): Promise<void> {
    for (const [id, p] of [...this.pending]) {
      if (p.waitUntil === undefined || p.waitUntil <= now) await this.#run(id);
    }
  }

  async #run(id: string): Promise<"done" | "waiting"> {
    const entry = this.pending.get(id);
    if (!entry) return "done";
    const outcome = await runDrain(this.#deps(), entry.data, {
      save: async (data) => {
        entry.data = data;
      },
      later: async (at) => {
        entry.waitUntil = at;
      },
    });
    if (outcome === "done") this.pending.delete(id);
    return outcome;
  }
}
