import { describe, expect, it } from "vitest";
import { parseCli, UsageError } from "../../src/cli/args.ts";
import { CliEnvError } from "../../src/cli/env-error.ts";
import { remoteTarget, reviveDates, takeApiUrl } from "../../src/cli/remote.ts";

const TOKEN = `tsg_0123456789abcdef_${"a".repeat(43)}`;

describe("remote CLI settings", () => {
  it("takes --api-url out of argv wherever it stands before --, in both spellings", () => {
    expect(takeApiUrl(["--api-url", "https://d.example.com", "deploy", "shop"])).toEqual({
      apiUrl: "https://d.example.com",
      argv: ["deploy", "shop"],
    });
    expect(takeApiUrl(["status", "shop", "--api-url=https://x.example.com"]).apiUrl).toBe("https://x.example.com");
    expect(takeApiUrl(["run", "shop", "--", "echo", "--api-url", "x"])).toEqual({
      apiUrl: undefined,
      argv: ["run", "shop", "--", "echo", "--api-url", "x"],
    });
  });

  it("is off without a URL, and needs a token from the environment or a file, never argv", () => {
    expect(remoteTarget({}, undefined)).toBeUndefined();
    expect(() => remoteTarget({ TUSSILAGO_API_URL: "https://d.example.com" }, undefined)).toThrow(
      /TUSSILAGO_API_TOKEN/,
    );
    expect(remoteTarget({ TUSSILAGO_API_TOKEN: TOKEN }, "https://d.example.com/")).toEqual({
      baseUrl: "https://d.example.com",
      token: TOKEN,
    });
    const fromFile = remoteTarget(
      { TUSSILAGO_API_URL: "https://d.example.com/bot", TUSSILAGO_API_TOKEN_FILE: "/run/secrets/t" },
      undefined,
      (path) => (path === "/run/secrets/t" ? `${TOKEN}\n` : ""),
    );
    expect(fromFile).toEqual({ baseUrl: "https://d.example.com/bot", token: TOKEN });
    expect(() => parseCli(["deploy", "shop", "--token", TOKEN])).toThrow(UsageError);
  });

  it("refuses to send the token in clear to another host, or a URL with credentials", () => {
    const env = { TUSSILAGO_API_TOKEN: TOKEN };
    expect(() => remoteTarget(env, "http://d.example.com")).toThrow(CliEnvError);
    expect(() => remoteTarget(env, "http://d.example.com")).toThrow(/in clear/);
    expect(remoteTarget(env, "http://127.0.0.1:3000")?.baseUrl).toBe("http://127.0.0.1:3000");
    expect(remoteTarget({ ...env, TUSSILAGO_API_INSECURE: "1" }, "http://d.example.com")?.baseUrl).toBe(
      "http://d.example.com",
    );
    expect(() => remoteTarget(env, "https://u:p@d.example.com")).toThrow(/not in the URL/);
    expect(() => remoteTarget(env, "ftp://d.example.com")).toThrow(CliEnvError);
  });

  it("revives the API's ISO dates in …At fields only", () => {
    const parsed = JSON.parse(
      '{"createdAt":"2026-12-01T18:00:00.000Z","at":"2026-12-01T18:00:00Z","ref":"2026-12-01T18:00:00.000Z"}',
      reviveDates,
    ) as Record<string, unknown>;
    expect(parsed.createdAt).toBeInstanceOf(Date);
    expect(parsed.at).toBeInstanceOf(Date);
    expect(parsed.ref).toBe("2026-12-01T18:00:00.000Z");
  });
});
