import { listApps } from "../domain/apps.ts";
import { currentRelease } from "../domain/releases.ts";
import type { PipelineDeps } from "./deps.ts";
import { names } from "./settings.ts";

/**
 * Slugs of live apps with a current release whose Caddy route is missing or names other hosts: what `/readyz`
 * reports as a Caddy failure (a Caddy restarted empty answers its admin API but serves nothing until the reconcile
 * pass puts the routes back). Throws when the admin API does not answer.
 */
export async function appsWithoutRoute(deps: Pick<PipelineDeps, "db" | "proxy">): Promise<string[]> {
  const routes = new Map((await deps.proxy.listRoutes()).map((r) => [r.id, r]));
  const missing: string[] = [];
  for (const app of listApps(deps.db)) {
    if (!currentRelease(deps.db, app.uuid)) continue;
    const route = routes.get(names.route(app.uuid));
    if (route?.hosts.join(",") !== app.domain) missing.push(app.slug);
  }
  return missing;
}
