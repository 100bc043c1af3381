import { type AppServiceEndpoint, check, IPV4_RE, port, validName } from "./podman-args.ts";

/**
 * The host firewall for the two podman bridges (see podman.ts for why it is ours and not podman's `--internal`).
 * Pure text builders, unit-tested; `PodmanEngine.ensureNetworks` loads the result with `nft -f`.
 */

/** Private or link-local destinations a build container must not reach (metadata service, the LAN). */
export const DEFAULT_BLOCKED_CIDRS = [
  "10.0.0.0/8",
  "172.16.0.0/12",
  "192.168.0.0/16",
  "100.64.0.0/10",
  "169.254.0.0/16",
];

/** The same endpoint with "gateway" replaced by the bridge's real address. */
export interface ResolvedEndpoint {
  address: string;
  port: number;
}

const CIDR_RE = /^(?:\d{1,3}\.){3}\d{1,3}\/\d{1,2}$/;
const IFACE_RE = /^[a-zA-Z0-9_.-]{1,15}$/;

/**
 * The IPv4 nameservers of a resolv.conf, as podman hands them to containers on a bridge without its own DNS.
 * Loopback ones (a local stub resolver) are left out: a container cannot reach the host's loopback anyway.
 */
export function resolversFrom(resolvConf: string): string[] {
  const found = new Set<string>();
  for (const line of resolvConf.split("\n")) {
    const m = /^\s*nameserver\s+(\S+)\s*$/.exec(line);
    const address = m?.[1];
    if (!address || !IPV4_RE.test(address) || address.startsWith("127.")) continue;
    found.add(address);
  }
  return [...found];
}

/** Replaces "gateway" by the runtime bridge's address and validates every address and port. */
export function resolveEndpoints(endpoints: readonly AppServiceEndpoint[], gateway: string): ResolvedEndpoint[] {
  return endpoints.map((e) => ({
    address: check(IPV4_RE, e.address === "gateway" ? gateway : e.address, "app service address"),
    port: port(e.port, "app service port"),
  }));
}

export interface RulesetOptions {
  blockedCidrs?: readonly string[];
  /** Exact address + TCP port pairs the runtime (isolated) bridge may open connections to. */
  appServices?: readonly ResolvedEndpoint[];
  /**
   * The host's DNS resolvers (its /etc/resolv.conf, which podman copies into containers). The egress bridge may
   * reach port 53 of these even when they sit in a private range; port 53 of any other private address is dropped
   * like every other port there.
   */
  dnsResolvers?: readonly string[];
}

/**
 * nftables rules (one atomic `nft -f -` transaction: declare, delete, recreate) for the two podman bridges.
 * Both: nothing from a container reaches the host itself (Redis, PostgreSQL, Caddy admin listen on host
 * addresses) except replies to connections the host opened, such as the proxy's to a published port.
 * Isolated bridge: nothing is forwarded either (no internet, no other container; br_netfilter makes bridged
 * traffic visible to this hook). Egress bridge: forwarded to the internet only, never to private ranges, except
 * DNS to the host's own resolvers (a LAN service listening on port 53 is still a LAN service).
 * Both: except new TCP connections to the listed app services (the tenant stores), on the host (input) or elsewhere
 * (forward), accepted before any of those drops.
 */
export function egressRuleset(
  table: string,
  isolatedIface: string,
  egressIface: string,
  options: RulesetOptions = {},
): string {
  validName(table, "table");
  const iso = `"${check(IFACE_RE, isolatedIface, "isolated interface")}"`;
  const egr = `"${check(IFACE_RE, egressIface, "egress interface")}"`;
  const cidrs = (options.blockedCidrs ?? DEFAULT_BLOCKED_CIDRS)
    .map((c) => check(CIDR_RE, c, "blocked CIDR"))
    .join(", ");
  // Both bridges: apps with egress allowed run on the egress one and need their stores too (builds then can
  // reach the same ports; they hold no store credentials).
  const resolvers = (options.dnsResolvers ?? []).map((r) => check(IPV4_RE, r, "DNS resolver address"));
  const dns =
    resolvers.length === 0
      ? []
      : [`    iifname ${egr} ip daddr { ${resolvers.join(", ")} } meta l4proto { tcp, udp } th dport 53 accept`];
  const services = (options.appServices ?? []).map(
    (s) =>
      `    iifname { ${iso}, ${egr} } ip daddr ${check(IPV4_RE, s.address, "app service address")} tcp dport ${port(s.port, "app service port")} accept`,
  );
  return [
    `table inet ${table}`,
    `delete table inet ${table}`,
    `table inet ${table} {`,
    "  chain input {",
    "    type filter hook input priority filter - 10; policy accept;",
    `    iifname { ${iso}, ${egr} } ct state established,related accept`,
    ...services,
    `    iifname { ${iso}, ${egr} } drop`,
    "  }",
    "  chain forward {",
    "    type filter hook forward priority filter - 10; policy accept;",
    `    iifname { ${iso}, ${egr} } ct state established,related accept`,
    ...services,
    `    iifname ${iso} drop`,
    ...dns,
    ...(cidrs === "" ? [] : [`    iifname ${egr} ip daddr { ${cidrs} } drop`]),
    `    iifname ${egr} meta nfproto ipv6 drop`,
    "  }",
    "}",
    "",
  ].join("\n");
}
