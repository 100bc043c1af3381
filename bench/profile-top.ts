// Top self-time functions of a V8 CPU profile (`node --cpu-prof`), as a Markdown table.
//   node bench/profile-top.ts /tmp/prof/CPU.*.cpuprofile [count]
import { readFileSync } from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const [file, countArg] = process.argv.slice(2);
if (!file) throw new Error("usage: node bench/profile-top.ts FILE.cpuprofile [count]");
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const self = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  const node = byId.get(id);
  const us = profile.timeDeltas[i] ?? 0;
  total += us;
  if (!node) return;
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^file:\/\/.*?\/(node_modules|src|handlers|commands)\//, "$1/");
  const key = `${functionName || "(anonymous)"} ${where ? `${where}:${lineNumber + 1}` : ""}`.trim();
  self.set(key, (self.get(key) ?? 0) + us);
});
const rows = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, Number(countArg ?? 25));
const lines = [
  `${(total / 1e6).toFixed(1)} s sampled`,
  "",
  "| self % | self ms | function |",
  "| ---: | ---: | --- |",
  ...rows.map(([k, us]) => `| ${((100 * us) / total).toFixed(1)} | ${(us / 1000).toFixed(0)} | \`${k}\` |`),
];
process.stdout.write(`${lines.join("\n")}\n`);
