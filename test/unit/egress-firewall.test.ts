import { describe, expect, it } from "vitest";
import { egressRuleset, resolveEndpoints, resolversFrom } from "../../src/infra/egress-firewall.ts";
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

/**
 * A first-match evaluator for the rule shapes egressRuleset writes, so tests ask what happens to a packet instead of
 * grepping for lines (an accept placed after a drop is text that matches and a rule that never fires).
 */
interface Packet {
  iif: string;
  daddr: string;
  proto: "tcp" | "udp";
  dport: number;
  established?: boolean;
}

function ipToInt(ip: string): number {
  return ip.split(".").reduce((n, o) => n * 256 + Number(o), 0);
}

function inCidr(ip: string, cidr: string): boolean {
  const [net = "", bits = "32"] = cidr.split("/");
  const size = 2 ** (32 - Number(bits));
  return Math.floor(ipToInt(ip) / size) === Math.floor(ipToInt(net) / size);
}

function set(text: string): string[] {
  return text
    .replace(/[{}"]/g, " ")
    .split(/[\s,]+/)
    .filter(Boolean);
}

function verdict(ruleset: string, chain: "input" | "forward", p: Packet): "accept" | "drop" {
  const body = ruleset.split(`chain ${chain} {`)[1]?.split("\n  }")[0] ?? "";
  for (const raw of body.split("\n").map((l) => l.trim())) {
    if (!raw.startsWith("iifname")) continue;
    if (raw.endsWith("meta nfproto ipv6 drop")) continue; // the packets modelled here are IPv4
    const m =
      /^iifname (\{[^}]*\}|"[^"]+")(?: (ct state established,related))?(?: ip daddr (\{[^}]*\}|\S+))?(?: meta l4proto (\{[^}]*\}))?(?: (tcp|th) dport (\d+))? (accept|drop)$/.exec(
        raw,
      );
    if (!m) throw new Error(`rule shape the evaluator does not know: ${raw}`);
    const [, ifaces = "", ct, daddr, l4, dportKind, dport, action] = m;
    if (!set(ifaces).includes(p.iif)) continue;
    if (ct && !p.established) continue;
    if (daddr && !set(daddr).some((a) => inCidr(p.daddr, a.includes("/") ? a : `${a}/32`))) continue;
    if (l4 && !set(l4).includes(p.proto)) continue;
    if (dportKind === "tcp" && p.proto !== "tcp") continue;
    if (dport && Number(dport) !== p.dport) continue;
    return action as "accept" | "drop";
  }
  return "accept"; // the chains' policy
}

describe("egressRuleset: DNS from the egress bridge", () => {
  const dns = (daddr: string, proto: "tcp" | "udp" = "udp"): Packet => ({ iif: "podman2", daddr, proto, dport: 53 });

  it("port 53 is no way into private ranges: only the host's own resolvers are reachable there", () => {
    // Attack: a build on the egress bridge talks to anything on the LAN or the metadata range that listens on
    // port 53 (TCP or UDP) — a tunnel past the private-range drop, since DNS was accepted before it.
    const rules = egressRuleset("t", "podman1", "podman2", { dnsResolvers: ["10.255.255.53"] });
    for (const target of ["10.0.0.5", "192.168.1.1", "172.16.0.10", "169.254.169.254", "100.64.0.1"]) {
      expect(verdict(rules, "forward", dns(target))).toBe("drop");
      expect(verdict(rules, "forward", dns(target, "tcp"))).toBe("drop");
    }
    expect(verdict(rules, "forward", dns("10.255.255.53"))).toBe("accept");
    expect(verdict(rules, "forward", dns("10.255.255.53", "tcp"))).toBe("accept");
    // Public resolvers stay reachable (the egress bridge reaches the internet anyway).
    expect(verdict(rules, "forward", dns("192.0.2.53"))).toBe("accept");
    // The isolated bridge gets no DNS at all, resolver or not.
    expect(verdict(rules, "forward", { ...dns("10.255.255.53"), iif: "podman1" })).toBe("drop");
  });

  it("without resolvers every private DNS destination is dropped", () => {
    const rules = egressRuleset("t", "podman1", "podman2");
    expect(verdict(rules, "forward", dns("10.255.255.53"))).toBe("drop");
  });

  it("the evaluator itself sees the stores' accepts and the host drop", () => {
    const rules = egressRuleset("t", "podman1", "podman2", { appServices: [{ address: "10.89.0.1", port: 6432 }] });
    expect(verdict(rules, "input", { iif: "podman1", daddr: "10.89.0.1", proto: "tcp", dport: 6432 })).toBe("accept");
    expect(verdict(rules, "input", { iif: "podman1", daddr: "10.89.0.1", proto: "tcp", dport: 6379 })).toBe("drop");
    expect(verdict(rules, "forward", { iif: "podman2", daddr: "198.51.100.7", proto: "tcp", dport: 443 })).toBe(
      "accept",
    );
  });

  it("rejects resolver addresses that could inject rules", () => {
    for (const address of ["10.0.0.1 accept;", "0.0.0.0/0", "ns.example"]) {
      expect(() => egressRuleset("t", "p1", "p2", { dnsResolvers: [address] })).toThrow(InvalidPodmanArgument);
    }
  });
});

describe("resolversFrom", () => {
  it("keeps the IPv4 nameservers a container gets, once each, and drops loopback and junk", () => {
    const conf = [
      "# generated",
      "search example.internal",
      "nameserver 10.255.255.53",
      "nameserver 127.0.0.53",
      "  nameserver 192.0.2.53  ",
      "nameserver 10.255.255.53",
      "nameserver fd00::53",
      "nameserver 10.0.0.1; drop",
    ].join("\n");
    expect(resolversFrom(conf)).toEqual(["10.255.255.53", "192.0.2.53"]);
  });
});
