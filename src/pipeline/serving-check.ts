import type { AppView } from "../domain/apps.ts";
import type { HealthProbe } from "../infra/http-probe.ts";
import type { PipelineSettings } from "./settings.ts";

export interface ServingCheck {
  serving: boolean;
  /** Why not, in words a user can read ("the proxy answered HTTP 502"). */
  reason?: string;
}

/**
 * The proxy address to probe: the first listen address, with a bare ":8080" taken as loopback. undefined when none
 * is usable (then nothing can be claimed about serving).
 */
export function proxyProbeBase(listen: readonly string[]): string | undefined {
  const first = listen[0];
  if (first === undefined) return undefined;
  const m = /^(?:\[?([^\]]*)\]?)?:(\d{1,5})$/.exec(first.replace(/^[a-z]+:\/\//, ""));
  if (!m) return undefined;
  const host = m[1] === undefined || m[1] === "" || m[1] === "0.0.0.0" ? "127.0.0.1" : m[1];
  return `http://${host.includes(":") ? `[${host}]` : host}:${m[2]}`;
}

/**
 * Is the app served right now, as a visitor would see it: a GET of its health path through the proxy with its host
 * name, answered 2xx/3xx. Anything the bot says about an app serving is this check, just made.
 */
export async function checkServing(
  deps: { probe: HealthProbe; settings: Pick<PipelineSettings, "proxyListen"> },
  app: Pick<AppView, "domain" | "healthPath">,
): Promise<ServingCheck> {
  const base = proxyProbeBase(deps.settings.proxyListen);
  if (base === undefined) return { serving: false, reason: "the proxy has no address the bot can probe" };
  try {
    const status = await deps.probe.get(`${base}${app.healthPath}`, 3_000, app.domain);
    if (status >= 200 && status < 400) return { serving: true };
    return { serving: false, reason: `the proxy answered HTTP ${status} for ${app.domain}` };
  } catch (err) {
    return { serving: false, reason: `the proxy did not answer for ${app.domain} (${errorText(err)})` };
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message.slice(0, 200) : "unknown error";
}
