import { describe, expect, it } from "vitest";
import { egressRuleset, resolveEndpoints } from "../../src/infra/egress-firewall.ts";
import { InvalidPodmanArgument } from "../../src/infra/podman-args.ts";

describe("egressRuleset", () => {
  const rules = egressRuleset("tussilago_egress", "podman1", "podman2");

  it("replaces its own table atomically and never touches others", () => {
    expect(rules.split("\n").slice(0, 3)).toEqual([
      "table inet tussilago_egress",
      "delete table inet tussilago_egress",
      "table inet tussilago_egress {",
    ]);
    expect(rules).not.toMatch(/flush ruleset/);
  });

  it("drops new connections from both bridges to the host and everything forwarded from the isolated one", () => {
    expect(rules).toContain('iifname { "podman1", "podman2" } ct state established,related accept');
    expect(rules).toContain('iifname { "podman1", "podman2" } drop');
    expect(rules).toContain('iifname "podman1" drop');
    expect(rules).toContain(
      'iifname "podman2" ip daddr { 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, 169.254.0.0/16 } drop',
    );
    expect(rules).not.toContain("dport 5432");
  });

  it("lets both bridges open exactly the listed address:port pairs, on the host and beyond, before the drops", () => {
    const allowed = egressRuleset("t", "podman1", "podman2", {
      appServices: [
        { address: "10.89.0.1", port: 6432 },
        { address: "192.0.2.7", port: 6380 },
      ],
    });
    const lines = allowed.split("\n").map((l) => l.trim());
    const pg = 'iifname { "podman1", "podman2" } ip daddr 10.89.0.1 tcp dport 6432 accept';
    const cache = 'iifname { "podman1", "podman2" } ip daddr 192.0.2.7 tcp dport 6380 accept';
    const [input, forward] = allowed.split("chain forward");
    for (const chain of [input ?? "", forward ?? ""]) {
      expect(chain).toContain(pg);
      expect(chain).toContain(cache);
    }
    // Order matters: an accept after the bridge's drop would never be reached.
    expect(lines.indexOf(pg)).toBeLessThan(lines.indexOf('iifname { "podman1", "podman2" } drop'));
    expect(lines.lastIndexOf(pg)).toBeLessThan(lines.indexOf('iifname "podman1" drop'));
    // Apps with egress run on the egress bridge: their stores pass before its private-range drop.
    expect(lines.lastIndexOf(pg)).toBeLessThan(lines.findIndex((l) => l.startsWith('iifname "podman2" ip daddr {')));
  });

  it("rejects interface names, CIDRs, addresses and ports that could inject rules", () => {
    expect(() => egressRuleset("t", 'x" accept', "podman2")).toThrow(InvalidPodmanArgument);
    expect(() => egressRuleset("t", "podman1", "podman2", { blockedCidrs: ["0.0.0.0/0 } accept"] })).toThrow(
      InvalidPodmanArgument,
    );
    for (const address of ["10.0.0.1 tcp dport 1 accept;", "0.0.0.0/0", "999.1.1.1", "db.internal"]) {
      expect(() => egressRuleset("t", "p1", "p2", { appServices: [{ address, port: 5432 }] })).toThrow(
        InvalidPodmanArgument,
      );
    }
    for (const port of [0, 65536, 1.5, Number.NaN]) {
      expect(() => egressRuleset("t", "p1", "p2", { appServices: [{ address: "10.0.0.1", port }] })).toThrow(
        InvalidPodmanArgument,
      );
    }
  });
});

describe("resolveEndpoints", () => {
  it('replaces "gateway" with the bridge address and keeps literal addresses', () => {
    expect(
      resolveEndpoints(
        [
          { address: "gateway", port: 6432 },
          { address: "192.0.2.7", port: 6380, hostName: "cache.internal" },
        ],
        "10.89.4.1",
      ),
    ).toEqual([
      { address: "10.89.4.1", port: 6432 },
      { address: "192.0.2.7", port: 6380 },
    ]);
  });

  it("fails when the bridge has no IPv4 gateway to stand in for the host", () => {
    expect(() => resolveEndpoints([{ address: "gateway", port: 6432 }], "")).toThrow(InvalidPodmanArgument);
  });
});
