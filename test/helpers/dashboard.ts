import type { DashboardConfig } from "../../src/config.ts";
import { createApp } from "../../src/http/app.ts";
import { dashboardRoutes } from "../../src/http/dashboard.ts";
import { DashboardLive } from "../../src/http/dashboard-live.ts";
import { PipelineEvents } from "../../src/pipeline/events.ts";
import { chatopsWorld, TEAM } from "./chatops.ts";
import { FakeSlackOidc, type SlackUser } from "./fake-slack-oidc.ts";

export const COOKIE_SECRET = "dashboard-cookie-secret-0123456789abcdef";

/**
 * The dashboard on the chat-ops world (tenant `acme`, fake queue, settable clock), signed in through a fake Slack
 * OpenID provider. `publicUrl` is where the browser reaches it; `issuerUrl` where the provider is. With `fetch`
 * unset the provider must be listening at `issuerUrl` (the browser test); by default it answers in-process.
 */
export function dashboardWorld(
  options: {
    publicUrl?: string;
    issuerUrl?: string;
    issuer?: FakeSlackOidc;
    inProcess?: boolean;
    onQuery?: (sql: string) => void;
  } = {},
) {
  const world = chatopsWorld(options.onQuery ? { onQuery: options.onQuery } : {});
  const issuer = options.issuer ?? new FakeSlackOidc();
  const publicUrl = options.publicUrl ?? "http://127.0.0.1:3000";
  const config: DashboardConfig = {
    publicUrl,
    clientId: issuer.clientId,
    clientSecret: issuer.clientSecret,
    issuer: options.issuerUrl ?? "http://127.0.0.1:9",
    cookieSecret: COOKIE_SECRET,
  };
  issuer.redirectUris.add(`${publicUrl}/dashboard/auth/callback`);
  const events = new PipelineEvents((err) => {
    throw err;
  });
  const live = new DashboardLive({ db: world.db, events, log: world.logger, pollMs: 200 });
  const decided: string[] = [];
  const routes = dashboardRoutes({
    config,
    chatops: world.deps,
    live,
    ...(options.inProcess === false ? {} : { fetch: issuer.fetch }),
    onDecided: async (outcome) => {
      decided.push(outcome.kind);
    },
  });
  const http = createApp({ logger: world.logger, readiness: [], dashboardRoutes: routes });
  return { ...world, issuer, config, events, live, http, decided, publicUrl };
}
export type DashboardWorld = ReturnType<typeof dashboardWorld>;

export function slackUser(userId: string, name = userId.toLowerCase()): SlackUser {
  return { teamId: TEAM, userId, name };
}

/** `name=value` pairs of a response's Set-Cookie headers (an expired/deleted cookie maps to ""). */
export function cookiesOf(res: Response): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of res.headers.getSetCookie()) {
    const [pair] = line.split(";");
    const eq = (pair ?? "").indexOf("=");
    out.set((pair ?? "").slice(0, eq), /max-age=0/i.test(line) ? "" : (pair ?? "").slice(eq + 1));
  }
  return out;
}

/**
 * The whole sign-in through `app.request`: start → the provider's authorize → callback. `editCallback` may change
 * the callback URL before it is followed (a forged state); `dropLoginCookie` follows it without the sign-in cookie.
 */
export async function signIn(
  w: DashboardWorld,
  user: SlackUser | undefined,
  opts: { editCallback?: (url: URL) => void; dropLoginCookie?: boolean } = {},
): Promise<{ response: Response; session: string | undefined }> {
  w.issuer.user = user;
  const start = await w.http.request(`${w.publicUrl}/dashboard/auth/start`);
  if (start.status !== 302) throw new Error(`start answered ${start.status}`);
  const login = cookiesOf(start).get("tussilago-login");
  const authorize = await w.issuer.app.request(start.headers.get("location") ?? "");
  const callback = new URL(authorize.headers.get("location") ?? "");
  opts.editCallback?.(callback);
  const response = await w.http.request(callback.href, {
    headers: opts.dropLoginCookie ? {} : { cookie: `tussilago-login=${login}` },
  });
  const session = cookiesOf(response).get("tussilago-session");
  return { response, session: session === "" ? undefined : session };
}

export function get(w: DashboardWorld, path: string, session: string | undefined): Promise<Response> {
  return Promise.resolve(
    w.http.request(`${w.publicUrl}${path}`, { headers: session ? { cookie: `tussilago-session=${session}` } : {} }),
  );
}

export function post(
  w: DashboardWorld,
  path: string,
  session: string | undefined,
  form: Record<string, string>,
  headers: Record<string, string> = { origin: "http://127.0.0.1:3000" },
): Promise<Response> {
  return Promise.resolve(
    w.http.request(`${w.publicUrl}${path}`, {
      method: "POST",
      body: new URLSearchParams(form).toString(),
      headers: {
        "content-type": "application/x-www-form-urlencoded",
        ...(session ? { cookie: `tussilago-session=${session}` } : {}),
        ...headers,
      },
    }),
  );
}

/** The CSRF token a page's forms carry. */
export async function csrfOf(res: Response): Promise<string> {
  const match = /name="csrf" value="([^"]+)"/.exec(await res.text());
  if (!match?.[1]) throw new Error("no csrf token in page");
  return match[1];
}
