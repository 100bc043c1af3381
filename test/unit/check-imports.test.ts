import { describe, expect, it } from "vitest";
import {
  checkImportGraph,
  findCycles,
  type ImportGraph,
  importSpecifiers,
  layerOf,
} from "../../scripts/check-imports.ts";

/** A small graph shaped like the real one: every edge points down, files of one layer import each other. */
function cleanGraph(): Map<string, string[]> {
  return new Map([
    ["src/bot.ts", ["src/http/app.ts", "src/pipeline/deploy-job.ts", "src/log.ts"]],
    ["src/http/app.ts", ["handlers/slack-command.ts", "src/log.ts"]],
    ["handlers/slack-command.ts", ["commands/deploy.ts", "commands/gate.ts"]],
    ["commands/deploy.ts", ["commands/gate.ts", "src/pipeline/queues.ts", "src/domain/apps.ts"]],
    ["commands/gate.ts", ["src/domain/users.ts"]],
    ["src/pipeline/deploy-job.ts", ["src/pipeline/queues.ts", "src/infra/caddy.ts", "src/lib/backoff.ts"]],
    ["src/pipeline/queues.ts", ["src/lib/backoff.ts"]],
    ["src/domain/apps.ts", ["src/db/client.ts", "src/domain/errors.ts"]],
    ["src/domain/users.ts", ["src/db/client.ts"]],
    ["src/domain/errors.ts", []],
    ["src/db/client.ts", ["src/log.ts"]],
    ["src/infra/caddy.ts", ["src/lib/backoff.ts", "src/log.ts"]],
    ["src/lib/backoff.ts", []],
    ["src/log.ts", ["src/config.ts"]],
    ["src/config.ts", []],
  ]);
}

const none = { allowedEdges: [] };

describe("checkImportGraph", () => {
  it("passes a graph whose imports all point down and form no cycle", () => {
    expect(checkImportGraph(cleanGraph(), none)).toEqual([]);
    expect(findCycles(cleanGraph())).toEqual([]);
  });

  it("fails on a planted upward import, naming both files and both layers", () => {
    const graph = cleanGraph();
    graph.set("src/infra/caddy.ts", [...(graph.get("src/infra/caddy.ts") ?? []), "src/pipeline/queues.ts"]);
    expect(checkImportGraph(graph, none)).toEqual([
      "src/infra/caddy.ts -> src/pipeline/queues.ts (layer infra imports higher layer pipeline)",
    ]);
  });

  it("fails on a planted cycle inside one layer and prints the cycle", () => {
    const graph = cleanGraph();
    graph.set("commands/gate.ts", ["src/domain/users.ts", "commands/deploy.ts"]);
    expect(checkImportGraph(graph, none)).toEqual([
      "cycle: commands/deploy.ts -> commands/gate.ts -> commands/deploy.ts",
    ]);
  });

  it("prints one cycle per cycle group and names the group's other files", () => {
    const graph: ImportGraph = new Map([
      ["src/domain/a.ts", ["src/domain/b.ts"]],
      ["src/domain/b.ts", ["src/domain/c.ts", "src/domain/a.ts"]],
      ["src/domain/c.ts", ["src/domain/b.ts"]],
      ["src/domain/d.ts", ["src/domain/d.ts"]],
    ]);
    expect(checkImportGraph(graph, none)).toEqual([
      "cycle: src/domain/a.ts -> src/domain/b.ts -> src/domain/a.ts (same cycle group: src/domain/c.ts)",
      "cycle: src/domain/d.ts -> src/domain/d.ts",
    ]);
  });

  it("tolerates an allow-listed upward edge, and fails once that edge is gone", () => {
    const graph = cleanGraph();
    graph.set("src/pipeline/queues.ts", ["src/lib/backoff.ts", "commands/gate.ts"]);
    const allowedEdges = ["src/pipeline/queues.ts -> commands/gate.ts"];
    expect(checkImportGraph(graph, { allowedEdges })).toEqual([]);
    expect(checkImportGraph(cleanGraph(), { allowedEdges })).toEqual([
      "src/pipeline/queues.ts -> commands/gate.ts: allowed upward edge no longer exists; delete it from the allow-list",
    ]);
  });

  it("fails on a file that belongs to no layer, and keeps test doubles in src/testing/ out of production", () => {
    const graph = cleanGraph();
    graph.set("src/stray.ts", []);
    graph.set("src/domain/users.ts", ["src/db/client.ts", "src/testing/fake-engine.ts"]);
    graph.set("src/testing/fake-engine.ts", ["src/infra/caddy.ts"]);
    expect(checkImportGraph(graph, none)).toEqual([
      "src/stray.ts: in no layer (add it to LAYERS in scripts/check-imports.ts and docs/architecture.md)",
      "src/domain/users.ts -> src/testing/fake-engine.ts (layer domain imports higher layer testing)",
    ]);
  });
});

describe("layerOf", () => {
  it("matches folders by prefix and files exactly", () => {
    expect(layerOf("src/cli/args.ts")).toBe(layerOf("src/cli.ts"));
    expect(layerOf("src/cli-extra.ts")).toBeUndefined();
    expect(layerOf("src/lib/backoff.ts")).toBe(layerOf("src/log.ts"));
  });
});

describe("importSpecifiers", () => {
  it("finds imports, type imports, re-exports and dynamic imports, and skips packages", () => {
    const text = [
      'import { a } from "./a.ts";',
      'import type { B } from "../b.ts";',
      'export { c } from "./c.ts";',
      'export type * from "./d.ts";',
      'import "./e.ts";',
      'const f = await import("./f.ts");',
      'type G = import("./g.ts").G;',
      'import { z } from "zod";',
      'import { readFile } from "node:fs";',
    ].join("\n");
    expect(importSpecifiers("x.ts", text)).toEqual([
      "./a.ts",
      "../b.ts",
      "./c.ts",
      "./d.ts",
      "./e.ts",
      "./f.ts",
      "./g.ts",
    ]);
  });
});
