import { createHash, createHmac, createSecretKey, type KeyObject, timingSafeEqual } from "node:crypto";
import type { AckFn, App, Receiver, ReceiverEvent } from "@slack/bolt";
import { type Context, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { z } from "zod";
import type { Logger } from "../log.ts";
import { requestBodyLimit } from "./body-limit.ts";
import type { AppEnv } from "./context.ts";
import { badRequest, errorAnswer, tooLarge, unauthorized } from "./errors.ts";
import type { EventDedupe } from "./slack-dedupe.ts";

export interface HonoReceiverOptions {
  signingSecret: string;
  dedupe: EventDedupe;
  maxBodyBytes?: number;
  /** Answer 200 after this long even if no listener acked; Slack shows the user an error after 3 s. */
  ackTimeoutMs?: number;
  /** How long the dedupe store may take before the delivery is processed without it. */
  dedupeTimeoutMs?: number;
  /** Accepted distance between `X-Slack-Request-Timestamp` and our clock, both directions. */
  maxClockSkewSeconds?: number;
  now?: () => number;
  /**
   * The JSON answer to a slash command whose reply depends on its text alone (help, a usage line), or undefined.
   * Such a command is answered right after the signature check, without the dedupe store (a Redis round trip)
   * and without Bolt: a replay of it can only show the same text again.
   */
  statelessCommand?: ((command: string, text: string) => string | undefined) | undefined;
}

export type SlackKind = "command" | "interaction" | "event";

/** One Slack request, whatever carried it: the Hono route and the node:http fast path (slack-fast-path.ts). */
export interface SlackRequest {
  kind: SlackKind;
  rawBody: Buffer;
  /** A request header by its lower-case name. */
  header: (name: string) => string | undefined;
  correlationId: string;
  /** The request's logger (made when first needed). */
  log: () => Logger;
}

/**
 * A finished answer to Slack: `json` (application/json), `text` (text/plain) or no body at all. Errors come back as
 * answers too (the JSON src/http/errors.ts's mapError writes), never as throws.
 */
export interface SlackAnswer {
  status: ContentfulStatusCode;
  body: string | null;
  type?: "json" | "text" | undefined;
}

const EMPTY: SlackAnswer = { status: 200, body: null };
const json = (body: unknown): SlackAnswer => ({ status: 200, body: JSON.stringify(body), type: "json" });

/** Slack itself caps a slash command's text at 4,000 characters; anything longer is not a command we run. */
export const MAX_COMMAND_TEXT = 4000;

const commandSchema = z.looseObject({
  command: z.string().regex(/^\/[\w-]{1,64}$/),
  // Length is checked after parsing, so an over-long command gets an answer the user can read instead of a 400.
  text: z.string().optional(),
  team_id: z.string().min(1),
  user_id: z.string().min(1),
});
const interactionSchema = z.looseObject({ type: z.string().min(1) });
const eventSchema = z.looseObject({
  type: z.string().min(1),
  event_id: z.string().min(1).max(128).optional(),
  challenge: z.string().max(1024).optional(),
});

/**
 * Slack's v0 request signing (https://docs.slack.dev/authentication/verifying-requests-from-slack): HMAC-SHA256 of
 * `v0:{timestamp}:{raw body}`. The timestamp window stops a captured request from being replayed later.
 */
export function verifySlackSignature(args: {
  /** The secret, or a key object made from it once (saves preparing the key on every request). */
  signingSecret: string | KeyObject;
  rawBody: Buffer;
  signature: string | undefined;
  timestamp: string | undefined;
  nowMs: number;
  maxClockSkewSeconds: number;
}): void {
  if (!args.signature || !args.timestamp) throw unauthorized("missing X-Slack-Signature or X-Slack-Request-Timestamp");
  if (!/^\d{1,12}$/.test(args.timestamp)) throw unauthorized("malformed X-Slack-Request-Timestamp");
  if (Math.abs(Math.floor(args.nowMs / 1000) - Number(args.timestamp)) > args.maxClockSkewSeconds) {
    throw unauthorized("request timestamp is outside the accepted window; check the server clock");
  }
  const hmac = createHmac("sha256", args.signingSecret);
  hmac.update(`v0:${args.timestamp}:`);
  hmac.update(args.rawBody);
  const expected = Buffer.from(`v0=${hmac.digest("hex")}`);
  const given = Buffer.from(args.signature);
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
    throw unauthorized("signature does not match; check that SLACK_SIGNING_SECRET is the app's signing secret");
  }
}

function parseForm(text: string): Record<string, string> {
  return Object.fromEntries(new URLSearchParams(text));
}

function parseBody(kind: SlackKind, text: string, form?: Record<string, string>): Record<string, unknown> {
  let candidate: unknown;
  let schema: z.ZodType<Record<string, unknown>>;
  try {
    if (kind === "command") {
      candidate = form ?? parseForm(text);
      schema = commandSchema;
    } else if (kind === "interaction") {
      const { payload } = parseForm(text);
      if (payload === undefined) throw badRequest("interaction body has no payload field");
      candidate = JSON.parse(payload);
      schema = interactionSchema;
    } else {
      candidate = JSON.parse(text);
      schema = eventSchema;
    }
  } catch (err) {
    if (err instanceof SyntaxError) throw badRequest(`${kind} body is not valid JSON`);
    throw err;
  }
  const parsed = schema.safeParse(candidate);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw badRequest(`malformed ${kind}: ${issue ? `${issue.path.join(".") || "body"} ${issue.message}` : "invalid"}`);
  }
  return parsed.data;
}

function parseRetryNum(header: string | undefined): number | undefined {
  if (header === undefined) return undefined;
  if (!/^\d{1,3}$/.test(header)) throw badRequest("malformed X-Slack-Retry-Num");
  return Number(header);
}

function dedupeKey(body: Record<string, unknown>, rawBody: Buffer): string {
  if (typeof body.event_id === "string") return `event:${body.event_id}`;
  return `body:${createHash("sha256").update(rawBody).digest("hex")}`;
}

function ackAnswer(response: unknown): SlackAnswer {
  if (response === undefined || response === null || response === "") return EMPTY;
  if (typeof response === "string") return { status: 200, body: response, type: "text" };
  return json(response);
}

/** A SlackAnswer as the Hono route's Response. */
function honoResponse(c: Context<AppEnv>, a: SlackAnswer): Response {
  if (a.body === null) return c.body(null, a.status);
  if (a.type === "text") return c.text(a.body, a.status);
  return c.body(a.body, a.status, { "Content-Type": "application/json" });
}

/**
 * Bolt's `Receiver` over the Hono app: Hono owns HTTP (routing, size limits, error mapping), Bolt keeps listeners
 * and middleware. The HTTP answer goes out as soon as a listener acks, never later than `ackTimeoutMs`; the rest
 * of the listener keeps running after the response.
 */
export class HonoReceiver implements Receiver {
  readonly #signingSecret: KeyObject;
  readonly #statelessCommand: HonoReceiverOptions["statelessCommand"];
  readonly #dedupe: EventDedupe;
  readonly #maxBodyBytes: number;
  readonly #ackTimeoutMs: number;
  readonly #dedupeTimeoutMs: number;
  readonly #maxClockSkewSeconds: number;
  readonly #now: () => number;
  readonly #inFlight = new Set<Promise<void>>();
  #app: App | undefined;

  constructor(options: HonoReceiverOptions) {
    this.#signingSecret = createSecretKey(Buffer.from(options.signingSecret, "utf8"));
    this.#statelessCommand = options.statelessCommand;
    this.#dedupe = options.dedupe;
    this.#maxBodyBytes = options.maxBodyBytes ?? 1024 * 1024;
    // Slack's deadline is 3 s; keep a margin for the network between us and Slack.
    this.#ackTimeoutMs = options.ackTimeoutMs ?? 2_500;
    this.#dedupeTimeoutMs = options.dedupeTimeoutMs ?? 250;
    this.#maxClockSkewSeconds = options.maxClockSkewSeconds ?? 300;
    this.#now = options.now ?? Date.now;
  }

  init(app: App): void {
    this.#app = app;
  }

  /** The HTTP server belongs to the Hono app; nothing to open here. */
  async start(): Promise<void> {}

  /** Lets listeners that already acked finish their work (the server stops taking requests first). */
  async stop(): Promise<void> {
    await Promise.allSettled([...this.#inFlight]);
  }

  routes(): Hono<AppEnv> {
    const routes = new Hono<AppEnv>();
    const limit = requestBodyLimit({
      maxSize: this.#maxBodyBytes,
      onError: () => {
        throw tooLarge(`Slack request body exceeds ${this.#maxBodyBytes} bytes`);
      },
    });
    const route = (kind: SlackKind) => async (c: Context<AppEnv>) => {
      const rawBody = Buffer.from(await c.req.arrayBuffer());
      const answer = await this.answer({
        kind,
        rawBody,
        header: (name) => c.req.header(name),
        correlationId: c.get("correlationId"),
        log: () => c.get("log"),
      });
      return honoResponse(c, answer);
    };
    routes.post("/commands", limit, route("command"));
    routes.post("/interactions", limit, route("interaction"));
    routes.post("/events", limit, route("event"));
    return routes;
  }

  get maxBodyBytes(): number {
    return this.#maxBodyBytes;
  }

  /** The 413 for a body over the limit, for whichever reader found it too large. */
  tooLarge(correlationId: string, log: () => Logger): SlackAnswer {
    return errorAnswer(tooLarge(`Slack request body exceeds ${this.#maxBodyBytes} bytes`), correlationId, log);
  }

  /** Answers one Slack request (signature first); errors become their answers. */
  async answer(req: SlackRequest): Promise<SlackAnswer> {
    try {
      return await this.#handle(req);
    } catch (err) {
      return errorAnswer(err, req.correlationId, req.log);
    }
  }

  async #handle(req: SlackRequest): Promise<SlackAnswer> {
    const { kind, rawBody } = req;
    const text = rawBody.toString("utf8");
    // Slack checks a slash command's certificate with `ssl_check=1` and may not sign it (Bolt skips verification
    // too); it dispatches nothing, so answering it unverified reveals nothing.
    const form = kind === "command" ? parseForm(text) : undefined;
    if (form?.ssl_check === "1") return EMPTY;

    verifySlackSignature({
      signingSecret: this.#signingSecret,
      rawBody,
      signature: req.header("x-slack-signature"),
      timestamp: req.header("x-slack-request-timestamp"),
      nowMs: this.#now(),
      maxClockSkewSeconds: this.#maxClockSkewSeconds,
    });
    const body = parseBody(kind, text, form);
    if (kind === "command" && typeof body.text === "string" && body.text.length > MAX_COMMAND_TEXT) {
      req.log().info({ length: body.text.length }, "over-long Slack command refused");
      return json({
        response_type: "ephemeral",
        text: `That command is too long (${body.text.length.toLocaleString("en")} characters; the limit is ${MAX_COMMAND_TEXT.toLocaleString("en")}). Split it into several shorter commands.`,
      });
    }
    if (kind === "command" && this.#statelessCommand) {
      const answer = this.#statelessCommand(String(body.command), typeof body.text === "string" ? body.text : "");
      if (answer !== undefined) return { status: 200, body: answer, type: "json" };
    }
    if (kind === "event" && body.type === "url_verification") {
      if (typeof body.challenge !== "string") throw badRequest("url_verification without a challenge");
      return json({ challenge: body.challenge });
    }
    const retryNum = parseRetryNum(req.header("x-slack-retry-num"));
    const retryReason = req.header("x-slack-retry-reason");
    const log = req.log().child({ slackKind: kind, ...(retryNum === undefined ? {} : { retryNum }) });
    return this.#dispatch(req.correlationId, log, {
      body,
      retryNum,
      retryReason,
      key: dedupeKey(body, rawBody),
    });
  }

  #dispatch(
    correlationId: string,
    log: Logger,
    req: { body: Record<string, unknown>; retryNum: number | undefined; retryReason: string | undefined; key: string },
  ): Promise<SlackAnswer> {
    const app = this.#app;
    if (!app) throw new Error("HonoReceiver received a request before Bolt called init()");

    return new Promise<SlackAnswer>((resolve, reject) => {
      let answered = false;
      let acked = false;
      const answer = (response: SlackAnswer) => {
        if (answered) return;
        answered = true;
        clearTimeout(timer);
        resolve(response);
      };
      const timer = setTimeout(() => {
        log.warn({ ackTimeoutMs: this.#ackTimeoutMs }, "no ack from a Slack listener in time; answered 200 empty");
        answer(EMPTY);
      }, this.#ackTimeoutMs);

      const ack: AckFn<unknown> = async (response) => {
        if (acked) {
          log.warn("ack() called more than once; the later call is ignored");
          return;
        }
        acked = true;
        if (answered) log.warn("ack() arrived after the fallback response; its body is lost");
        answer(ackAnswer(response));
      };

      const work = (async () => {
        // Any delivery seen before is dropped, not only Slack's own retries: a signed request replayed byte for
        // byte inside the signature window (no retry header) would otherwise run its command a second time. Slack
        // itself never sends the same body twice except as a retry (commands carry a fresh trigger_id, events an
        // event_id), so nothing legitimate is lost.
        const first = await this.#firstSeen(req.key, log);
        if (!first) {
          log.info({ retry: req.retryNum !== undefined }, "Slack delivery already received; not processed again");
          answer(EMPTY);
          return;
        }
        const event: ReceiverEvent = {
          body: req.body,
          ack,
          customProperties: { correlationId },
        };
        if (req.retryNum !== undefined) event.retryNum = req.retryNum;
        if (req.retryReason !== undefined) event.retryReason = req.retryReason;
        await app.processEvent(event);
        if (!acked) {
          // Nothing matched (or the listener returned without acking): no ack is coming, so do not keep Slack waiting.
          log.warn("Slack request finished without ack; answered 200 empty");
          answer(EMPTY);
        }
      })().catch((err: unknown) => {
        if (answered) {
          log.error({ err }, "Slack listener failed after its request was answered");
          return;
        }
        clearTimeout(timer);
        answered = true;
        // We answer 500, so Slack will retry: that retry must be processed, not dropped as "already seen".
        this.#dedupe
          .forget(req.key)
          .catch((e: unknown) => log.warn({ err: e }, "could not forget a failed Slack delivery"));
        reject(err);
      });
      this.#inFlight.add(work);
      void work.finally(() => this.#inFlight.delete(work));
    });
  }

  /**
   * A dedupe store that is down must not drop deliveries: process, and let idempotent jobs absorb a repeat. Bounded
   * too: the store is Redis, whose client waits for ever while it is unreachable, and Slack's 3 s keep running.
   */
  async #firstSeen(key: string, log: Logger): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${this.#dedupeTimeoutMs} ms`)),
          this.#dedupeTimeoutMs,
        );
      });
      return await Promise.race([this.#dedupe.firstSeen(key), timeout]);
    } catch (err) {
      log.warn({ err }, "Slack dedupe store failed; processing the delivery anyway");
      return true;
    } finally {
      clearTimeout(timer);
    }
  }
}
