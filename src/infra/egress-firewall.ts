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
}

/**
 * nftables rules (one atomic `nft -f -` transaction: declare, delete, recreate) for the two podman bridges.
 * Both: nothing from a container reaches the host itself (Redis, PostgreSQL, Caddy admin listen on host
 * addresses) except replies to connections the host opened, such as the proxy's to a published port.
 * Isolated bridge: nothing is forwarded either (no internet, no other container; br_netfilter makes bridged
 * traffic visible to this hook). Egress bridge: forwarded to the internet and DNS only, never to private ranges.
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
    `    iifname ${egr} meta l4proto { tcp, udp } th dport 53 accept`,
    ...(cidrs === "" ? [] : [`    iifname ${egr} ip daddr { ${cidrs} } drop`]),
    `    iifname ${egr} meta nfproto ipv6 drop`,
    "  }",
    "}",
    "",
  ].join("\n");
}
