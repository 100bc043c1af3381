import { afterEach, describe, expect, it } from "vitest";
import { appsWithoutRoute } from "../../src/pipeline/route-check.ts";
import { names } from "../../src/pipeline/settings.ts";
import { chatopsWorld, type World } from "../helpers/chatops.ts";
import { FakeProxyAdmin } from "../helpers/fake-proxy.ts";

// What /readyz reports as a Caddy failure: routes that do not match the database.
const worlds: World[] = [];
afterEach(() => {
  for (const w of worlds.splice(0)) w.cleanup();
});

function setup() {
  const world = chatopsWorld();
  worlds.push(world);
  const proxy = FakeProxyAdmin.withServer();
  const live = world.app("live-app");
  world.release(live);
  world.app("never-deployed");
  return { world, proxy, live };
}

describe("appsWithoutRoute", () => {
  it("names a deployed app whose route is missing (a Caddy restarted empty), not an app never deployed", async () => {
    const { world, proxy } = setup();
    expect(await appsWithoutRoute({ db: world.db, proxy })).toEqual(["live-app"]);
  });

  it("is empty once the route is back, and names the app again when the route serves another host", async () => {
    const { world, proxy, live } = setup();
    const route = { id: names.route(live.uuid), hosts: [live.domain], upstreams: ["127.0.0.1:40001"] };
    await proxy.upsertRoute(route);
    expect(await appsWithoutRoute({ db: world.db, proxy })).toEqual([]);
    await proxy.upsertRoute({ ...route, hosts: ["elsewhere.example.test"] });
    expect(await appsWithoutRoute({ db: world.db, proxy })).toEqual(["live-app"]);
  });

  it("fails when the admin API does not answer", async () => {
    const { world, proxy } = setup();
    proxy.failNext("listRoutes");
    await expect(appsWithoutRoute({ db: world.db, proxy })).rejects.toThrow("unreachable");
  });
});
