import { readFileSync } from "node:fs";
import type { Env } from "../config.ts";
import { CliEnvError } from "./env-error.ts";

/**
 * The remote CLI's transport (docs/api.md): the operator API of a bot on another host. The token comes from the
 * environment or a file, never from argv (other users of the host can read a process's argv).
 */
export interface RemoteTarget {
  /** The bot's base URL, without the API prefix: `https://deploy.example.com`. */
  baseUrl: string;
  token: string;
}

const LOOPBACK = new Set(["localhost", "127.0.0.1", "[::1]"]);
const MAX_TOKEN_FILE_BYTES = 4096;

function opt(env: Env, name: string): string | undefined {
  const value = env[name];
  return value === undefined || value.trim() === "" ? undefined : value.trim();
}

/**
 * `--api-url <url>` / `--api-url=<url>` anywhere before a `--`: removed from argv, so each command's own options stay
 * strict. Returns the URL given (or undefined) and the remaining argv.
 */
export function takeApiUrl(argv: readonly string[]): { apiUrl: string | undefined; argv: string[] } {
  const rest: string[] = [];
  let apiUrl: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] ?? "";
    if (arg === "--") {
      rest.push(...argv.slice(i));
      break;
    }
    if (arg === "--api-url") {
      apiUrl = argv[i + 1] ?? "";
      i += 1;
    } else if (arg.startsWith("--api-url=")) {
      apiUrl = arg.slice("--api-url=".length);
    } else {
      rest.push(arg);
    }
  }
  return { apiUrl, argv: rest };
}

/**
 * The remote target when the CLI should talk to a bot over the API: `--api-url` or TUSSILAGO_API_URL, with the token
 * from TUSSILAGO_API_TOKEN or the file named by TUSSILAGO_API_TOKEN_FILE. Plain http:// is refused except to this
 * host (the token would cross the network in clear) unless TUSSILAGO_API_INSECURE=1.
 */
export function remoteTarget(
  env: Env,
  apiUrlFlag: string | undefined,
  readFile: (path: string) => string = (p) => readFileSync(p, "utf8"),
): RemoteTarget | undefined {
  const raw = apiUrlFlag ?? opt(env, "TUSSILAGO_API_URL");
  if (raw === undefined) return undefined;
  if (!URL.canParse(raw))
    throw new CliEnvError("TUSSILAGO_API_URL / --api-url: not a URL (e.g. https://deploy.example.com)");
  const url = new URL(raw);
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    throw new CliEnvError("TUSSILAGO_API_URL / --api-url: must be an https:// URL");
  }
  if (url.username !== "" || url.password !== "") {
    throw new CliEnvError("TUSSILAGO_API_URL / --api-url: put the token in TUSSILAGO_API_TOKEN, not in the URL");
  }
  if (url.protocol === "http:" && !LOOPBACK.has(url.hostname) && opt(env, "TUSSILAGO_API_INSECURE") !== "1") {
    throw new CliEnvError(
      `TUSSILAGO_API_URL: http://${url.host} would send the token in clear; use https:// (or TUSSILAGO_API_INSECURE=1 on a trusted network)`,
    );
  }
  const token = readToken(env, readFile);
  const baseUrl = `${url.origin}${url.pathname.replace(/\/+$/, "")}`;
  return { baseUrl, token };
}

function readToken(env: Env, readFile: (path: string) => string): string {
  const direct = opt(env, "TUSSILAGO_API_TOKEN");
  if (direct !== undefined) return direct;
  const file = opt(env, "TUSSILAGO_API_TOKEN_FILE");
  if (file === undefined) {
    throw new CliEnvError(
      "the operator API needs a token: set TUSSILAGO_API_TOKEN or TUSSILAGO_API_TOKEN_FILE (create one on the bot's host with: tussilago tokens create <name>)",
    );
  }
  let text: string;
  try {
    text = readFile(file);
  } catch (err) {
    throw new CliEnvError(
      `TUSSILAGO_API_TOKEN_FILE ${file}: cannot read it (${(err as NodeJS.ErrnoException).code ?? "error"})`,
    );
  }
  const token = text.trim();
  if (token === "" || token.length > MAX_TOKEN_FILE_BYTES || /\s/.test(token)) {
    throw new CliEnvError(`TUSSILAGO_API_TOKEN_FILE ${file}: must hold one token`);
  }
  return token;
}

/** An answer of the API that is not a success; the message is the bot's (safe to show), with its reference. */
export class RemoteError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.name = "RemoteError";
    this.status = status;
    this.code = code;
  }
}

const ISO_DATE = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/;

/** JSON dates come back as ISO strings; every `…At` field (and `at`) of the API's shapes is a date again. */
export function reviveDates(key: string, value: unknown): unknown {
  if (typeof value === "string" && (key === "at" || key.endsWith("At")) && ISO_DATE.test(value)) return new Date(value);
  return value;
}

const REQUEST_TIMEOUT_MS = 30_000;

export class ApiClient {
  readonly #target: RemoteTarget;
  readonly #fetch: typeof fetch;

  constructor(target: RemoteTarget, fetchImpl: typeof fetch = fetch) {
    this.#target = target;
    this.#fetch = fetchImpl;
  }

  get baseUrl(): string {
    return this.#target.baseUrl;
  }

  get<T>(path: string, query?: Record<string, string | undefined>): Promise<T> {
    const params = new URLSearchParams();
    for (const [k, v] of Object.entries(query ?? {})) if (v !== undefined) params.set(k, v);
    const qs = params.size > 0 ? `?${params}` : "";
    return this.#request<T>("GET", `${path}${qs}`, undefined);
  }

  post<T>(path: string, body: unknown): Promise<T> {
    return this.#request<T>("POST", path, body);
  }

  async #request<T>(method: string, path: string, body: unknown): Promise<T> {
    const url = `${this.#target.baseUrl}/api/v1${path}`;
    let res: Response;
    try {
      res = await this.#fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.#target.token}`,
          accept: "application/json",
          ...(body === undefined ? {} : { "content-type": "application/json" }),
        },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
        redirect: "error",
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
    } catch (err) {
      const cause = err instanceof Error && err.cause instanceof Error ? err.cause.message : String(err);
      throw new CliEnvError(`cannot reach the bot's API at ${this.#target.baseUrl}: ${cause.split("\n")[0]}`);
    }
    const text = await res.text();
    let parsed: unknown;
    try {
      parsed = text === "" ? {} : JSON.parse(text, reviveDates);
    } catch {
      throw new RemoteError(
        res.status,
        "not_json",
        `the bot answered HTTP ${res.status} without JSON (is ${this.#target.baseUrl} the bot?)`,
      );
    }
    if (res.ok) return parsed as T;
    const error = parsed as { error?: unknown; code?: unknown; correlationId?: unknown };
    const message = typeof error.error === "string" ? error.error : `HTTP ${res.status}`;
    const code = typeof error.code === "string" ? error.code : `http_${res.status}`;
    const ref = typeof error.correlationId === "string" ? ` (reference ${error.correlationId})` : "";
    const prefix = res.status === 401 ? "the bot refused the API token: " : "";
    throw new RemoteError(res.status, code, `${prefix}${message}${res.status >= 500 ? ref : ""}`);
  }
}
