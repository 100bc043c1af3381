import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { ConfigError, defaultDataDir, HOST_CA_BUNDLE, loadConfig } from "../../src/config.ts";

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
  it("mounts the host's CA store into builds by default; a path names another bundle, none mounts nothing", () => {
    const unset = loadConfig({ TUSSILAGO_SECRET_KEY: KEY }).pipeline.buildCaBundle;
    expect(unset).toBe(existsSync(HOST_CA_BUNDLE) ? HOST_CA_BUNDLE : undefined);
    const other = loadConfig({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_BUILD_CA_BUNDLE: "/srv/proxy-ca.pem" });
    expect(other.pipeline.buildCaBundle).toBe("/srv/proxy-ca.pem");
    const none = loadConfig({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_BUILD_CA_BUNDLE: "none" });
    expect(none.pipeline.buildCaBundle).toBeUndefined();
    expect(() => loadConfig({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_BUILD_CA_BUNDLE: "relative.pem" })).toThrow(
      ConfigError,
    );
  });

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

  it("refuses a tenant Redis that is the bot's own Redis: running apps may connect to the tenant one", () => {
    const same = error({
      TUSSILAGO_SECRET_KEY: KEY,
      REDIS_URL: "redis://127.0.0.1:6379/0",
      TUSSILAGO_TENANT_REDIS_URL: "redis://admin:pw@localhost:6379/1",
    });
    expect(same.variable).toBe("TUSSILAGO_TENANT_REDIS_URL");
    expect(same.message).toContain("must not be the bot's own Redis");
    const other = loadConfig({
      TUSSILAGO_SECRET_KEY: KEY,
      REDIS_URL: "redis://127.0.0.1:6379",
      TUSSILAGO_TENANT_REDIS_URL: "redis://127.0.0.1:6380",
      TUSSILAGO_TENANT_REDIS_PUBLIC_HOST: "host.containers.internal",
    });
    expect(other.tenantStores).toMatchObject({
      redisPublicHost: "host.containers.internal",
      redisPublicPort: undefined,
    });
  });

  it("gives apps private Redis servers unless a shared tenant Redis is configured or chosen", () => {
    expect(loadConfig({ TUSSILAGO_SECRET_KEY: KEY }).tenantStores).toMatchObject({
      redisMode: "private",
      appRedisImage: "localhost/tussilago-redis:7",
    });
    const shared = { TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_TENANT_REDIS_URL: "redis://127.0.0.1:6380" };
    expect(loadConfig(shared).tenantStores.redisMode).toBe("shared");
    expect(loadConfig({ ...shared, TUSSILAGO_TENANT_REDIS_MODE: "private" }).tenantStores.redisMode).toBe("private");
    expect(error({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_TENANT_REDIS_MODE: "both" }).variable).toBe(
      "TUSSILAGO_TENANT_REDIS_MODE",
    );
    expect(error({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_APP_REDIS_IMAGE: "--privileged" }).variable).toBe(
      "TUSSILAGO_APP_REDIS_IMAGE",
    );
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
      auth: undefined,
    });
    expect(
      loadConfig({
        TUSSILAGO_SECRET_KEY: KEY,
        GITHUB_WEBHOOK_SECRET: "w",
        GITHUB_API_URL: "https://ghe.example/api/v3",
      }).github?.apiUrl,
    ).toBe("https://ghe.example/api/v3");
  });

  it("reads GitHub API auth from a token or from a GitHub App id + private key, never echoing them", () => {
    const base = { TUSSILAGO_SECRET_KEY: KEY, GITHUB_WEBHOOK_SECRET: "w" };
    expect(loadConfig({ ...base, GITHUB_TOKEN: "github_pat_1" }).github?.auth).toEqual({
      kind: "token",
      token: "github_pat_1",
    });
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const pem = privateKey.export({ type: "pkcs8", format: "pem" }).toString();
    const inline = loadConfig({ ...base, GITHUB_APP_ID: "123", GITHUB_APP_PRIVATE_KEY: pem.replaceAll("\n", "\\n") });
    expect(inline.github?.auth).toEqual({ kind: "app", appId: "123", privateKeyPem: pem });
    const dir = mkdtempSync(join(tmpdir(), "tussilago-config-"));
    try {
      writeFileSync(join(dir, "app.pem"), pem);
      const fromFile = loadConfig({ ...base, GITHUB_APP_ID: "123", GITHUB_APP_PRIVATE_KEY_PATH: join(dir, "app.pem") });
      expect(fromFile.github?.auth).toEqual({ kind: "app", appId: "123", privateKeyPem: pem });
      expect(
        error({ ...base, GITHUB_APP_ID: "123", GITHUB_APP_PRIVATE_KEY_PATH: join(dir, "nope.pem") }).variable,
      ).toBe("GITHUB_APP_PRIVATE_KEY_PATH");
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }

    expect(error({ ...base, GITHUB_TOKEN: "t", GITHUB_APP_ID: "1" }).variable).toBe("GITHUB_TOKEN");
    expect(error({ ...base, GITHUB_APP_PRIVATE_KEY: pem }).variable).toBe("GITHUB_APP_ID");
    expect(error({ ...base, GITHUB_APP_ID: "123" }).variable).toBe("GITHUB_APP_PRIVATE_KEY");
    expect(error({ ...base, GITHUB_APP_ID: "abc", GITHUB_APP_PRIVATE_KEY: pem }).variable).toBe("GITHUB_APP_ID");
    const bad = error({ ...base, GITHUB_APP_ID: "123", GITHUB_APP_PRIVATE_KEY: "not-a-key-s3cr3t" });
    expect(bad.variable).toBe("GITHUB_APP_PRIVATE_KEY");
    expect(bad.message).not.toContain("s3cr3t");
    // A token needs no global webhook secret (each link has its own); a GitHub App's deliveries are signed with it.
    expect(loadConfig({ TUSSILAGO_SECRET_KEY: KEY, GITHUB_TOKEN: "t" }).github).toEqual({
      webhookSecret: undefined,
      apiUrl: "https://api.github.com",
      auth: { kind: "token", token: "t" },
    });
    expect(
      error({ TUSSILAGO_SECRET_KEY: KEY, GITHUB_APP_ID: "123", GITHUB_APP_PRIVATE_KEY: pem.replaceAll("\n", "\\n") })
        .variable,
    ).toBe("GITHUB_WEBHOOK_SECRET");
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
      ["TUSSILAGO_RUNSC_NETWORK", "bridge"],
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

describe("Python images", () => {
  it("defaults: 3.11, 3.13 and 3.14 built locally, 3.14 the default", () => {
    expect(loadConfig({ TUSSILAGO_SECRET_KEY: KEY }).pipeline).toMatchObject({
      pythonImages: {
        "3.11": "localhost/tussilago-python:3.11",
        "3.13": "localhost/tussilago-python:3.13",
        "3.14": "localhost/tussilago-python:3.14",
      },
      defaultPython: "3.14",
      baseImage: "localhost/tussilago-python:3.14",
    });
  });

  it("TUSSILAGO_PYTHON_IMAGES replaces the table; TUSSILAGO_BASE_IMAGE names the default version's image", () => {
    const pipeline = loadConfig({
      TUSSILAGO_SECRET_KEY: KEY,
      TUSSILAGO_PYTHON_IMAGES: "3.12=registry.example/python-uv:3.12, 3.13=registry.example/python-uv:3.13",
      TUSSILAGO_PYTHON_DEFAULT: "3.13",
      TUSSILAGO_BASE_IMAGE: "registry.example/mine:1",
    }).pipeline;
    expect(pipeline.pythonImages).toEqual({
      "3.12": "registry.example/python-uv:3.12",
      "3.13": "registry.example/mine:1",
    });
    expect(pipeline.baseImage).toBe("registry.example/mine:1");
  });

  it("refuses malformed pairs and a default without an image, naming the variable", () => {
    expect(error({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_PYTHON_IMAGES: "python3=img:1" }).variable).toBe(
      "TUSSILAGO_PYTHON_IMAGES",
    );
    expect(error({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_PYTHON_IMAGES: "3.14=Bad Image" }).variable).toBe(
      "TUSSILAGO_PYTHON_IMAGES",
    );
    const noDefault = error({ TUSSILAGO_SECRET_KEY: KEY, TUSSILAGO_PYTHON_DEFAULT: "3.12" });
    expect(noDefault.variable).toBe("TUSSILAGO_PYTHON_DEFAULT");
    expect(noDefault.message).toContain("versions: 3.11, 3.13, 3.14");
  });
});

describe("loadConfig: the web dashboard", () => {
  const on = {
    TUSSILAGO_SECRET_KEY: KEY,
    TUSSILAGO_DASHBOARD: "1",
    TUSSILAGO_PUBLIC_URL: "https://deploy.example.com/",
    SLACK_OIDC_CLIENT_ID: "123.456",
    SLACK_OIDC_CLIENT_SECRET: "client-secret",
    TUSSILAGO_DASHBOARD_COOKIE_SECRET: "c".repeat(32),
  };

  it("is off by default, and off with the flag off even when the other settings are there", () => {
    expect(loadConfig({ TUSSILAGO_SECRET_KEY: KEY }).dashboard).toBeUndefined();
    expect(loadConfig({ ...on, TUSSILAGO_DASHBOARD: "false" }).dashboard).toBeUndefined();
  });

  it("reads every setting, with Slack as the default issuer", () => {
    expect(loadConfig(on).dashboard).toEqual({
      publicUrl: "https://deploy.example.com",
      clientId: "123.456",
      clientSecret: "client-secret",
      issuer: "https://slack.com",
      cookieSecret: "c".repeat(32),
    });
    expect(loadConfig({ ...on, SLACK_OIDC_ISSUER: "http://127.0.0.1:8123" }).dashboard?.issuer).toBe(
      "http://127.0.0.1:8123",
    );
  });

  it("names the missing or bad variable when the flag is on", () => {
    for (const name of [
      "TUSSILAGO_PUBLIC_URL",
      "SLACK_OIDC_CLIENT_ID",
      "SLACK_OIDC_CLIENT_SECRET",
      "TUSSILAGO_DASHBOARD_COOKIE_SECRET",
    ]) {
      const err = error({ ...on, [name]: "" });
      expect(err.variable).toBe(name);
      expect(err.message).toContain("is required when TUSSILAGO_DASHBOARD is on");
    }
    expect(error({ ...on, TUSSILAGO_DASHBOARD_COOKIE_SECRET: "short" }).variable).toBe(
      "TUSSILAGO_DASHBOARD_COOKIE_SECRET",
    );
    // Cookies and sign-in codes would cross the network in clear.
    expect(error({ ...on, TUSSILAGO_PUBLIC_URL: "http://deploy.example.com" }).variable).toBe("TUSSILAGO_PUBLIC_URL");
    expect(error({ ...on, TUSSILAGO_PUBLIC_URL: "https://deploy.example.com/bot" }).variable).toBe(
      "TUSSILAGO_PUBLIC_URL",
    );
    expect(error({ ...on, SLACK_OIDC_ISSUER: "http://issuer.example.com" }).variable).toBe("SLACK_OIDC_ISSUER");
  });
});
