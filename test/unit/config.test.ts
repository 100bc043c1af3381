import { describe, expect, it } from "vitest";
import { ConfigError, defaultDataDir, loadConfig } from "../../src/config.ts";

const KEY = "k".repeat(32);

function error(env: Record<string, string>): ConfigError {
  try {
    loadConfig(env);
  } catch (err) {
    if (err instanceof ConfigError) return err;
    throw err;
  }
  throw new Error("expected a ConfigError");
}

describe("loadConfig", () => {
  it("applies the documented defaults", () => {
    const config = loadConfig({ TUSSILAGO_SECRET_KEY: KEY });
    expect(config).toMatchObject({
      port: 3000,
      host: "127.0.0.1",
      logLevel: "info",
      redisUrl: undefined,
      caddyAdmin: undefined,
      slack: undefined,
      github: undefined,
      maxBodyBytes: 1024 * 1024,
    });
    expect(config.dataDir).toBe(defaultDataDir());
    expect(config.dataDir).toMatch(/tussilago$/);
    expect(config.dataDir.startsWith(process.cwd())).toBe(false);
  });

  it("requires TUSSILAGO_SECRET_KEY of at least 32 characters", () => {
    expect(error({}).variable).toBe("TUSSILAGO_SECRET_KEY");
    expect(error({ TUSSILAGO_SECRET_KEY: "   " }).variable).toBe("TUSSILAGO_SECRET_KEY");
    const short = error({ TUSSILAGO_SECRET_KEY: "x".repeat(31) });
    expect(short.variable).toBe("TUSSILAGO_SECRET_KEY");
    expect(short.message).toContain("32");
    expect(short.message).not.toContain("x".repeat(31));
  });

  it("turns Slack on only with both the signing secret and the bot token", () => {
    expect(error({ TUSSILAGO_SECRET_KEY: KEY, SLACK_SIGNING_SECRET: "s" }).variable).toBe("SLACK_BOT_TOKEN");
    expect(error({ TUSSILAGO_SECRET_KEY: KEY, SLACK_BOT_TOKEN: "xoxb-1" }).variable).toBe("SLACK_SIGNING_SECRET");
    const http = loadConfig({ TUSSILAGO_SECRET_KEY: KEY, SLACK_SIGNING_SECRET: "s", SLACK_BOT_TOKEN: "xoxb-1" });
    expect(http.slack).toEqual({ signingSecret: "s", botToken: "xoxb-1", appToken: undefined, apiUrl: undefined });
    const socket = loadConfig({
      TUSSILAGO_SECRET_KEY: KEY,
      SLACK_SIGNING_SECRET: "s",
      SLACK_BOT_TOKEN: "xoxb-1",
      SLACK_APP_TOKEN: "xapp-1",
      SLACK_API_URL: "http://127.0.0.1:9999/api/",
    });
    expect(socket.slack?.appToken).toBe("xapp-1");
    expect(socket.slack?.apiUrl).toBe("http://127.0.0.1:9999/api");
  });

  it("turns GitHub on with the webhook secret; the API URL defaults to api.github.com", () => {
    expect(loadConfig({ TUSSILAGO_SECRET_KEY: KEY, GITHUB_WEBHOOK_SECRET: "w" }).github).toEqual({
      webhookSecret: "w",
      apiUrl: "https://api.github.com",
    });
    expect(
      loadConfig({
        TUSSILAGO_SECRET_KEY: KEY,
        GITHUB_WEBHOOK_SECRET: "w",
        GITHUB_API_URL: "https://ghe.example/api/v3",
      }).github?.apiUrl,
    ).toBe("https://ghe.example/api/v3");
  });

  it("names the variable for each malformed optional setting", () => {
    const cases: Array<[string, string]> = [
      ["PORT", "eighty"],
      ["PORT", "70000"],
      ["LOG_LEVEL", "loud"],
      ["TUSSILAGO_DATA_DIR", "relative/dir"],
      ["REDIS_URL", "http://localhost"],
      ["CADDY_ADMIN", "localhost:2019"],
      ["SLACK_API_URL", "not a url"],
      ["GITHUB_API_URL", "ftp://x"],
    ];
    for (const [name, value] of cases) {
      const env: Record<string, string> = {
        TUSSILAGO_SECRET_KEY: KEY,
        SLACK_SIGNING_SECRET: "s",
        SLACK_BOT_TOKEN: "t",
        GITHUB_WEBHOOK_SECRET: "w",
        [name]: value,
      };
      expect(error(env).variable, `${name}=${value}`).toBe(name);
    }
  });

  it("accepts the documented forms of REDIS_URL and CADDY_ADMIN", () => {
    const config = loadConfig({
      TUSSILAGO_SECRET_KEY: KEY,
      PORT: "0",
      REDIS_URL: "redis://127.0.0.1:6380/2",
      CADDY_ADMIN: "/run/caddy/admin.sock",
      TUSSILAGO_DATA_DIR: "/var/lib/tussilago",
    });
    expect(config).toMatchObject({
      port: 0,
      redisUrl: "redis://127.0.0.1:6380/2",
      caddyAdmin: "/run/caddy/admin.sock",
      dataDir: "/var/lib/tussilago",
    });
    expect(loadConfig({ TUSSILAGO_SECRET_KEY: KEY, CADDY_ADMIN: "http://127.0.0.1:2019" }).caddyAdmin).toBe(
      "http://127.0.0.1:2019",
    );
  });
});
