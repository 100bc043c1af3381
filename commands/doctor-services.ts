import { join } from "node:path";
import type { GithubAuthConfig } from "../src/config.ts";
import { githubAppJwt } from "../src/infra/github-api.ts";
import type { HostProbe } from "../src/infra/host-probe.ts";
import type { RedisTarget } from "../src/infra/redis.ts";
import { type Check, fail, oneLine, pass, skip, warn } from "./doctor-verdicts.ts";

/** The services the bot talks to: its Caddy and Redis (embedded or remote), Slack, GitHub, and the clock. */

export interface ServiceSettings {
  dataDir: string;
  /** undefined → the bot runs its own Caddy with the admin socket in the data dir. */
  caddyAdmin: string | undefined;
  /** undefined → the bot runs its own redis-server on a socket in the data dir. */
  redisUrl: string | undefined;
  slack: { botToken: string; apiUrl: string } | undefined;
  github: { apiUrl: string; auth: GithubAuthConfig | undefined } | undefined;
}

/** An answer's `Date` header and when it arrived, for the clock check. */
export interface Dated {
  source: string;
  date: string;
  receivedAt: number;
}

/**
 * Bot scopes of docs/slack-manifest.yml (test/unit/doctor.test.ts fails when they drift apart). Without the first
 * two nothing works; without the others deploy threads and names degrade (docs/slack.md).
 */
export const SLACK_SCOPES = {
  essential: ["commands", "chat:write"],
  degraded: ["chat:write.public", "channels:history", "groups:history", "users:read"],
} as const;

const TIMEOUT_MS = 5_000;
const errorText = (err: unknown) => oneLine(err instanceof Error ? err.message : String(err)) || "no answer";

function dated(source: string, answer: { headers: Readonly<Record<string, string | undefined>>; receivedAt: number }) {
  const date = answer.headers.date;
  return date === undefined ? undefined : { source, date, receivedAt: answer.receivedAt };
}

/** Embedded services need their binary; a missing socket just means the bot is not running now. */
async function embedded(probe: HostProbe, name: string, binary: string, pkg: string, socket: string) {
  if ((await probe.which(binary)) === undefined) {
    return { check: fail(name, `${binary} not found on PATH (the bot runs its own)`, `apt-get install -y ${pkg}`) };
  }
  if (!(await probe.exists(socket))) {
    return { check: warn(name, `embedded, not running (no ${socket})`, "start the bot: npm start") };
  }
  return { socket };
}

export async function caddyCheck(probe: HostProbe, s: ServiceSettings): Promise<Check> {
  const name = "caddy admin";
  let socketPath: string | undefined;
  let url = "http://localhost/config/";
  let where: string;
  let fix: string;
  if (s.caddyAdmin === undefined) {
    const e = await embedded(probe, name, "caddy", "caddy", join(s.dataDir, "caddy", "admin.sock"));
    if ("check" in e) return e.check;
    socketPath = e.socket;
    where = `embedded, ${socketPath}`;
    fix = `a stale socket of a bot that died: stop every bot on ${s.dataDir}, then npm start`;
  } else {
    if (/^https?:\/\//.test(s.caddyAdmin)) url = `${s.caddyAdmin.replace(/\/+$/, "")}/config/`;
    else socketPath = s.caddyAdmin.replace(/^unix\//, "");
    where = `CADDY_ADMIN=${s.caddyAdmin}`;
    fix = "start Caddy with its admin API at CADDY_ADMIN, or unset CADDY_ADMIN so the bot runs its own";
  }
  try {
    // Over a unix socket Caddy accepts only an empty Host header (anything else: 403 "host not allowed").
    const answer = await probe.http(
      { method: "GET", url, ...(socketPath === undefined ? {} : { socketPath, headers: { host: "" } }) },
      TIMEOUT_MS,
    );
    if (answer.status === 200) return pass(name, `answers (${where})`);
    return fail(name, `answered ${answer.status} (${where}): ${oneLine(answer.body)}`, fix);
  } catch (err) {
    return fail(name, `unreachable (${where}): ${errorText(err)}`, fix);
  }
}

function redactUrl(url: string): string {
  if (!URL.canParse(url)) return "REDIS_URL";
  const u = new URL(url);
  if (u.password !== "") u.password = "***";
  return u.toString();
}

const configValue = (reply: unknown): string | undefined =>
  Array.isArray(reply) && typeof reply[1] === "string" ? reply[1] : undefined;

export async function redisCheck(probe: HostProbe, s: ServiceSettings): Promise<Check> {
  const name = "redis";
  let target: RedisTarget;
  let where: string;
  if (s.redisUrl === undefined) {
    const e = await embedded(probe, name, "redis-server", "redis-server", join(s.dataDir, "redis", "redis.sock"));
    if ("check" in e) return e.check;
    target = { socketPath: e.socket };
    where = `embedded, ${e.socket}`;
  } else {
    target = { url: s.redisUrl };
    where = redactUrl(s.redisUrl);
  }
  let replies: unknown[];
  try {
    replies = await probe.redis(
      target,
      [
        ["INFO", "persistence"],
        ["CONFIG", "GET", "save"],
        ["CONFIG", "GET", "maxmemory-policy"],
      ],
      TIMEOUT_MS,
    );
  } catch (err) {
    const fix = s.redisUrl === undefined ? "restart the bot: npm start" : "start Redis or correct REDIS_URL";
    return fail(name, `unreachable (${where}): ${errorText(err)}`, fix);
  }
  const [info, save, policy] = replies;
  if (typeof info !== "string")
    return fail(name, `INFO failed (${where}): ${errorText(info)}`, "check Redis' ACL for INFO");
  const aof = /^aof_enabled:1\s*$/m.test(info);
  // CONFIG may be renamed or disabled on managed Redis; then only INFO speaks.
  const saveRule = configValue(save);
  const eviction = configValue(policy);
  const persistFix =
    "redis-cli CONFIG SET appendonly yes && redis-cli CONFIG REWRITE (or appendonly yes in redis.conf)";
  if (!aof) {
    if (saveRule !== undefined && saveRule.trim() === "") {
      return fail(
        name,
        `no persistence (${where}): appendonly no, save "": a restart loses every queued job`,
        persistFix,
      );
    }
    const rule = saveRule === undefined ? "" : ` (save "${saveRule}")`;
    return warn(name, `RDB snapshots only${rule} (${where}): jobs queued since the last snapshot are lost`, persistFix);
  }
  if (eviction !== undefined && eviction !== "noeviction") {
    return warn(
      name,
      `AOF on, but maxmemory-policy ${eviction} (${where}) may evict queue keys`,
      "redis-cli CONFIG SET maxmemory-policy noeviction && redis-cli CONFIG REWRITE",
    );
  }
  return pass(name, `answers, AOF on (${where})`);
}

export async function slackCheck(probe: HostProbe, s: ServiceSettings): Promise<{ check: Check; dated?: Dated }> {
  const name = "slack token";
  if (s.slack === undefined) return { check: skip(name, "skipped: SLACK_BOT_TOKEN not set") };
  let answer: Awaited<ReturnType<HostProbe["http"]>>;
  try {
    answer = await probe.http(
      {
        method: "POST",
        url: `${s.slack.apiUrl}/auth.test`,
        headers: {
          authorization: `Bearer ${s.slack.botToken}`,
          "content-type": "application/x-www-form-urlencoded",
        },
        body: "",
      },
      TIMEOUT_MS,
    );
  } catch (err) {
    return {
      check: fail(name, `${s.slack.apiUrl} unreachable: ${errorText(err)}`, "check the network or SLACK_API_URL"),
    };
  }
  const time = dated("Slack", answer);
  const withDate = (check: Check) => (time === undefined ? { check } : { check, dated: time });
  let body: { ok?: unknown; error?: unknown; team?: unknown; user?: unknown } = {};
  try {
    body = JSON.parse(answer.body) as typeof body;
  } catch {
    // An answer that is not JSON is reported below as a failure with its status.
  }
  if (body.ok !== true) {
    const why = typeof body.error === "string" ? oneLine(body.error) : `HTTP ${answer.status}`;
    return withDate(
      fail(
        name,
        `auth.test refused the token: ${why}`,
        "set SLACK_BOT_TOKEN to the app's Bot User OAuth Token (xoxb-…, OAuth & Permissions page)",
      ),
    );
  }
  const granted = new Set(
    (answer.headers["x-oauth-scopes"] ?? "")
      .split(",")
      .map((x) => x.trim())
      .filter((x) => x !== ""),
  );
  const who = `${typeof body.user === "string" ? oneLine(body.user) : "bot"} in ${typeof body.team === "string" ? oneLine(body.team) : "the workspace"}`;
  const missingEssential = SLACK_SCOPES.essential.filter((x) => !granted.has(x));
  const missingOther = SLACK_SCOPES.degraded.filter((x) => !granted.has(x));
  const missing = [...missingEssential, ...missingOther];
  const fix = `add the bot scopes ${missing.join(", ")} (docs/slack-manifest.yml), then Reinstall to Workspace`;
  if (missingEssential.length > 0) return withDate(fail(name, `${who}; missing scopes: ${missing.join(", ")}`, fix));
  if (missingOther.length > 0) return withDate(warn(name, `${who}; missing scopes: ${missing.join(", ")}`, fix));
  return withDate(pass(name, `${who}; all manifest scopes granted`));
}

export async function githubCheck(
  probe: HostProbe,
  s: ServiceSettings,
  now: () => number = Date.now,
): Promise<{ check: Check; dated?: Dated }> {
  const name = "github credentials";
  const auth = s.github?.auth;
  if (s.github === undefined || auth === undefined) {
    return { check: skip(name, "skipped: neither GITHUB_TOKEN nor a GitHub App is configured") };
  }
  // A token: /rate_limit answers any valid token and costs no quota. An App: /app with its JWT, the first step of
  // every installation token the bot mints (src/infra/github-api.ts).
  const [path, bearer, fix] =
    auth.kind === "token"
      ? ["/rate_limit", auth.token, "set GITHUB_TOKEN to a valid token"]
      : [
          "/app",
          githubAppJwt(auth.appId, auth.privateKeyPem, now()),
          "check GITHUB_APP_ID and the App's private key (and the clock: the JWT is time-bound)",
        ];
  let answer: Awaited<ReturnType<HostProbe["http"]>>;
  try {
    answer = await probe.http(
      {
        method: "GET",
        url: `${s.github.apiUrl}${path}`,
        headers: {
          accept: "application/vnd.github+json",
          authorization: `Bearer ${bearer}`,
          "user-agent": "tussilago-deploy-bot",
          "x-github-api-version": "2022-11-28",
        },
      },
      TIMEOUT_MS,
    );
  } catch (err) {
    return {
      check: fail(name, `${s.github.apiUrl} unreachable: ${errorText(err)}`, "check the network or GITHUB_API_URL"),
    };
  }
  const time = dated("GitHub", answer);
  const withDate = (check: Check) => (time === undefined ? { check } : { check, dated: time });
  if (answer.status !== 200) {
    let message = "";
    try {
      const m = (JSON.parse(answer.body) as { message?: unknown }).message;
      if (typeof m === "string") message = `: ${oneLine(m)}`;
    } catch {
      // Not JSON: the status says enough.
    }
    return withDate(fail(name, `GET ${path} answered ${answer.status}${message}`, fix));
  }
  if (auth.kind === "app") {
    let slug = `App ${auth.appId}`;
    try {
      const s = (JSON.parse(answer.body) as { slug?: unknown }).slug;
      if (typeof s === "string") slug = `App ${oneLine(s)}`;
    } catch {
      // The status was 200: the key works even if the body is odd.
    }
    return withDate(pass(name, `${slug} authenticates`));
  }
  const remaining = answer.headers["x-ratelimit-remaining"];
  const limit = answer.headers["x-ratelimit-limit"];
  const quota = remaining !== undefined && limit !== undefined ? ` (${remaining} of ${limit} requests left)` : "";
  return withDate(pass(name, `token accepted${quota}`));
}

/** Slack checks request signatures against a 5-minute window; GitHub App JWTs are backdated by only 60 s. */
export function clockCheck(sources: readonly (Dated | undefined)[]): Check {
  const name = "clock";
  const source = sources.find((x) => x !== undefined);
  if (source === undefined) return skip(name, "skipped: no Slack or GitHub API configured to compare with");
  const theirs = Date.parse(source.date);
  if (Number.isNaN(theirs)) return skip(name, `skipped: ${source.source} sent an unreadable Date header`);
  // The header has whole seconds: a clock in sync reads 0–1 s ahead of it.
  const skewS = Math.round((source.receivedAt - theirs) / 1000);
  const found = `${skewS >= 0 ? "+" : ""}${skewS} s against ${source.source}'s Date header`;
  const fix = "timedatectl set-ntp true (or install chrony)";
  const off = Math.abs(skewS);
  if (off > 60) return fail(name, found, fix);
  if (off > 5) return warn(name, found, fix);
  return pass(name, found);
}
