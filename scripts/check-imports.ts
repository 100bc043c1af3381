// Fails (exit 1) when an import in the production code points up the layer order of docs/architecture.md, or when
// imports form a cycle. Every relative import counts: `import`, `import type`, `export … from` and `import()`.
// It also fails when a file outside src/domain/ and src/db/ imports "drizzle-orm" (any subpath) or a value (a table
// object) of src/db/schema.ts: data access lives in src/domain/ functions only (docs/architecture.md, "Data access").
// Usage: node scripts/check-imports.ts (npm run check:imports). Prints one line per offending edge, cycle or import.
import { existsSync, readdirSync, readFileSync, statSync } from "node:fs";
import { posix } from "node:path";
import { fileURLToPath } from "node:url";
import ts from "typescript";

/** Import graph: repository-relative file path → the repository-relative files it imports. */
export type ImportGraph = ReadonlyMap<string, readonly string[]>;

export interface Layer {
  name: string;
  /** Files (`src/bot.ts`) or folders with a trailing slash (`src/cli/`), relative to the repository root. */
  paths: readonly string[];
}

/**
 * Highest first; a file may import files of its own layer or of any layer below it. This is the order drawn in
 * docs/architecture.md, which must change together with this list.
 */
export const LAYERS: readonly Layer[] = [
  // Test doubles shipped in src/ (if any) sit above everything, so no production module can import them.
  { name: "testing", paths: ["src/testing/"] },
  { name: "root", paths: ["src/main.ts", "src/bot.ts", "src/lifecycle.ts"] },
  { name: "cli", paths: ["src/cli.ts", "src/cli/"] },
  { name: "http", paths: ["src/http/"] },
  { name: "handlers", paths: ["handlers/"] },
  { name: "commands", paths: ["commands/"] },
  { name: "reporters", paths: ["src/reporters/"] },
  { name: "pipeline", paths: ["src/pipeline/"] },
  { name: "domain", paths: ["src/domain/"] },
  { name: "db", paths: ["src/db/"] },
  { name: "infra", paths: ["src/infra/"] },
  // Configuration, the logger and pure helpers with no I/O (src/lib/): anything may import them.
  { name: "base", paths: ["src/config.ts", "src/log.ts", "src/lib/"] },
];

/** The folders scanned: production code only (test/, scripts/ and bench/ may import anything). */
export const PRODUCTION_ROOTS: readonly string[] = ["src", "commands", "handlers"];

/**
 * Upward edges tolerated for now, as "from -> to". Each entry says why and when it goes; an entry whose edge no longer
 * exists fails the check, so the list cannot go stale.
 */
/** Upward edges tolerated while a move is under way; the check fails once an entry outlives its edge. */
export const TEMPORARY_ALLOWED_EDGES: readonly string[] = [];

export function layerOf(file: string, layers: readonly Layer[] = LAYERS): number | undefined {
  const index = layers.findIndex((layer) =>
    layer.paths.some((path) => (path.endsWith("/") ? file.startsWith(path) : file === path)),
  );
  return index === -1 ? undefined : index;
}

export interface CheckOptions {
  layers?: readonly Layer[];
  allowedEdges?: readonly string[];
}

/** Pure: every problem of the graph as one line each; no lines means the graph is clean. */
export function checkImportGraph(graph: ImportGraph, options: CheckOptions = {}): string[] {
  const layers = options.layers ?? LAYERS;
  const allowed = new Set(options.allowedEdges ?? TEMPORARY_ALLOWED_EDGES);
  const used = new Set<string>();
  const problems: string[] = [];
  const files = [...new Set([...graph.keys(), ...[...graph.values()].flat()])].sort();
  for (const file of files) {
    if (layerOf(file, layers) === undefined) {
      problems.push(`${file}: in no layer (add it to LAYERS in scripts/check-imports.ts and docs/architecture.md)`);
    }
  }
  for (const [from, targets] of [...graph].sort(([a], [b]) => a.localeCompare(b))) {
    const fromLayer = layerOf(from, layers);
    for (const to of [...new Set(targets)].sort()) {
      const toLayer = layerOf(to, layers);
      if (fromLayer === undefined || toLayer === undefined || toLayer >= fromLayer) continue;
      const edge = `${from} -> ${to}`;
      if (allowed.has(edge)) {
        used.add(edge);
        continue;
      }
      problems.push(`${edge} (layer ${layers[fromLayer]?.name} imports higher layer ${layers[toLayer]?.name})`);
    }
  }
  for (const edge of allowed) {
    if (!used.has(edge)) problems.push(`${edge}: allowed upward edge no longer exists; delete it from the allow-list`);
  }
  for (const { cycle, component } of findCycles(graph)) {
    const others = component.filter((file) => !cycle.includes(file));
    const more = others.length > 0 ? ` (same cycle group: ${others.join(", ")})` : "";
    problems.push(`cycle: ${[...cycle, cycle[0]].join(" -> ")}${more}`);
  }
  return problems;
}

/**
 * One cycle per strongly connected component with more than one file (or a file importing itself), starting at the
 * component's alphabetically first file, with the component's files sorted. Tarjan's algorithm, iterative so a deep
 * graph cannot overflow the stack.
 */
export function findCycles(graph: ImportGraph): { cycle: string[]; component: string[] }[] {
  const nodes = [...new Set([...graph.keys(), ...[...graph.values()].flat()])].sort();
  const next = (node: string): string[] => [...new Set(graph.get(node) ?? [])].sort();
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const components: string[][] = [];
  let counter = 0;
  for (const root of nodes) {
    if (index.has(root)) continue;
    const work: { node: string; targets: string[]; at: number }[] = [];
    const visit = (node: string) => {
      index.set(node, counter);
      low.set(node, counter);
      counter += 1;
      stack.push(node);
      onStack.add(node);
      work.push({ node, targets: next(node), at: 0 });
    };
    visit(root);
    while (work.length > 0) {
      const frame = work[work.length - 1] as (typeof work)[number];
      const target = frame.targets[frame.at];
      if (target !== undefined) {
        frame.at += 1;
        if (!index.has(target)) visit(target);
        else if (onStack.has(target)) low.set(frame.node, Math.min(low.get(frame.node) ?? 0, index.get(target) ?? 0));
        continue;
      }
      work.pop();
      const parent = work[work.length - 1];
      if (parent) low.set(parent.node, Math.min(low.get(parent.node) ?? 0, low.get(frame.node) ?? 0));
      if (low.get(frame.node) === index.get(frame.node)) {
        const component: string[] = [];
        let member: string | undefined;
        do {
          member = stack.pop();
          if (member === undefined) break;
          onStack.delete(member);
          component.push(member);
        } while (member !== frame.node);
        components.push(component);
      }
    }
  }
  const cycles: { cycle: string[]; component: string[] }[] = [];
  for (const component of components) {
    const members = new Set(component);
    const sorted = [...component].sort();
    const start = sorted[0] as string;
    if (members.size === 1 && !next(start).includes(start)) continue;
    cycles.push({ cycle: pathBack(start, members, next), component: sorted });
  }
  return cycles.sort((a, b) => (a.component[0] ?? "").localeCompare(b.component[0] ?? ""));
}

/** Shortest path from `start` back to itself inside one strongly connected component (breadth-first). */
function pathBack(start: string, members: ReadonlySet<string>, next: (node: string) => string[]): string[] {
  const previous = new Map<string, string>();
  const queue = [start];
  for (let i = 0; i < queue.length; i += 1) {
    const node = queue[i] as string;
    for (const target of next(node)) {
      if (!members.has(target)) continue;
      if (target === start) {
        const path = [node];
        while (path[0] !== start) path.unshift(previous.get(path[0] as string) as string);
        return path;
      }
      if (previous.has(target)) continue;
      previous.set(target, node);
      queue.push(target);
    }
  }
  return [start];
}

/** Relative module specifiers of one source file, in every form that makes a dependency. */
export function importSpecifiers(fileName: string, text: string): string[] {
  const source = ts.createSourceFile(fileName, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const found: string[] = [];
  const literal = (node: ts.Node | undefined) => {
    if (node && ts.isStringLiteralLike(node)) found.push(node.text);
  };
  const walk = (node: ts.Node): void => {
    if (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) literal(node.moduleSpecifier);
    else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      literal(node.moduleReference.expression);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      literal(node.arguments[0]);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) literal(node.argument.literal);
    ts.forEachChild(node, walk);
  };
  walk(source);
  return found.filter((specifier) => specifier.startsWith("./") || specifier.startsWith("../"));
}

/** The only folders whose files may build queries: everything else calls a src/domain/ function. */
export const DATA_ACCESS_PATHS: readonly string[] = ["src/domain/", "src/db/"];
const SCHEMA_FILE = "src/db/schema.ts";

/** True when the declaration brings in types only (`import type`, `export type`, or every name marked `type`). */
function typeOnly(node: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(node)) {
    if (node.isTypeOnly) return true;
    const clause = node.exportClause;
    return clause !== undefined && ts.isNamedExports(clause) && clause.elements.every((e) => e.isTypeOnly);
  }
  const clause = node.importClause;
  if (clause === undefined) return false; // `import "x"` runs the module
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return (
    clause.name === undefined &&
    named !== undefined &&
    ts.isNamedImports(named) &&
    named.elements.every((e) => e.isTypeOnly)
  );
}

/**
 * Pure: one line per import of `file` that reaches the database around src/domain/: "drizzle-orm" or any of its
 * subpaths (types included), and any value import of src/db/schema.ts (a table object, ROLES, …). Type-only imports
 * of the schema's row and status types stay allowed; domain modules re-export the ones callers need.
 */
export function dataAccessProblems(file: string, text: string): string[] {
  if (DATA_ACCESS_PATHS.some((path) => file.startsWith(path))) return [];
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.Latest, true, ts.ScriptKind.TS);
  const problems: string[] = [];
  const report = (node: ts.Node, specifier: string, typesOnly: boolean) => {
    const line = source.getLineAndCharacterOfPosition(node.getStart(source)).line + 1;
    if (specifier === "drizzle-orm" || specifier.startsWith("drizzle-orm/")) {
      problems.push(
        `${file}:${line}: imports "${specifier}" outside src/domain/ and src/db/ (call a src/domain/ function)`,
      );
      return;
    }
    if (!specifier.startsWith("./") && !specifier.startsWith("../")) return;
    const target = posix.normalize(posix.join(posix.dirname(file), specifier)).replace(/\.js$/, ".ts");
    if ((target === SCHEMA_FILE || `${target}.ts` === SCHEMA_FILE) && !typesOnly) {
      problems.push(
        `${file}:${line}: imports values of ${SCHEMA_FILE} outside src/domain/ and src/db/ (call a src/domain/ function; only \`import type\` is allowed)`,
      );
    }
  };
  const walk = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier) {
      if (ts.isStringLiteralLike(node.moduleSpecifier)) report(node, node.moduleSpecifier.text, typeOnly(node));
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference)) {
      const expression = node.moduleReference.expression;
      if (ts.isStringLiteralLike(expression)) report(node, expression.text, node.isTypeOnly);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const argument = node.arguments[0];
      if (argument && ts.isStringLiteralLike(argument)) report(node, argument.text, false);
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument)) {
      const literal = node.argument.literal;
      if (ts.isStringLiteralLike(literal)) report(node, literal.text, true);
    }
    ts.forEachChild(node, walk);
  };
  walk(source);
  return problems;
}

function listTypeScript(root: string, dir: string): string[] {
  const absolute = posix.join(root, dir);
  if (!existsSync(absolute)) return [];
  return readdirSync(absolute).flatMap((entry) => {
    const path = posix.join(dir, entry);
    if (statSync(posix.join(root, path)).isDirectory()) return listTypeScript(root, path);
    return entry.endsWith(".ts") && !entry.endsWith(".d.ts") ? [path] : [];
  });
}

/** Reads the production files under `root` and resolves their relative imports to repository-relative paths. */
export function buildImportGraph(root: string): { graph: ImportGraph; unresolved: string[]; dataAccess: string[] } {
  const graph = new Map<string, string[]>();
  const unresolved: string[] = [];
  const dataAccess: string[] = [];
  for (const file of PRODUCTION_ROOTS.flatMap((dir) => listTypeScript(root, dir)).sort()) {
    const targets: string[] = [];
    const text = readFileSync(posix.join(root, file), "utf8");
    dataAccess.push(...dataAccessProblems(file, text));
    for (const specifier of importSpecifiers(file, text)) {
      const target = posix.normalize(posix.join(posix.dirname(file), specifier));
      const candidates = [target, target.replace(/\.js$/, ".ts"), `${target}.ts`, posix.join(target, "index.ts")];
      const hit = candidates.find((candidate) => {
        const path = posix.join(root, candidate);
        return existsSync(path) && statSync(path).isFile();
      });
      if (hit) targets.push(hit);
      else unresolved.push(`${file}: cannot resolve import "${specifier}"`);
    }
    graph.set(file, targets);
  }
  return { graph, unresolved, dataAccess };
}

if (import.meta.main) {
  const root = posix.join(posix.dirname(fileURLToPath(import.meta.url)), "..");
  const { graph, unresolved, dataAccess } = buildImportGraph(root);
  const problems = [...unresolved, ...checkImportGraph(graph), ...dataAccess];
  if (problems.length > 0) {
    process.stderr.write(
      `${problems.join("\n")}\ncheck:imports: ${problems.length} problem(s); see docs/architecture.md\n`,
    );
    process.exitCode = 1;
  } else {
    const edges = [...graph.values()].reduce((sum, targets) => sum + targets.length, 0);
    process.stdout.write(
      `check:imports: ${graph.size} files, ${edges} imports, all point down, no cycles, no data access outside src/domain/\n`,
    );
  }
}
