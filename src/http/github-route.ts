import { type Context, Hono } from "hono";
import type { ContentfulStatusCode } from "hono/utils/http-status";
import { githubPushRecorder, pushFields, recordGithubPush, storedPushPayload } from "../../handlers/github-push.ts";
import type { Db } from "../db/client.ts";
import type { SecretBox } from "../domain/crypto.ts";
import {
  applyLinkProof,
  auditLinkRefusal,
  boundByAnotherTenant,
  cachedLinkCandidates,
  type LinkCandidate,
  type LinkProof,
  needsControlProof,
  openWebhookSecret,
  signatureMatches,
} from "../domain/github-links.ts";
import type { DeliveryRecorder } from "../domain/webhook-deliveries.ts";
import type { Logger } from "../log.ts";
import { type JobQueue, QUEUE_NAMES } from "../pipeline/queues.ts";
import { requestBodyLimit } from "./body-limit.ts";
import type { AppEnv } from "./context.ts";
import { badRequest, errorAnswer, forbidden, tooLarge, unauthorized, unprocessable } from "./errors.ts";

export interface GithubRouteDeps {
  /**
   * GITHUB_WEBHOOK_SECRET. It verifies deliveries of the GitHub App (when `appMode`) and of links made before
   * per-link secrets (legacy flag); every other delivery must be signed with its link's own secret.
   */
  globalSecret: string | undefined;
  /** The bot authenticates as a GitHub App: its deliveries carry `installation.id`, checked against the link. */
  appMode: boolean;
  secrets: SecretBox;
  maxBodyBytes: number;
  db: Db;
  /**
   * Called after a push is recorded: wakes the outbox relay (src/pipeline/delivery-relay.ts), which enqueues it.
   * The route itself never talks to Redis, so its answer does not wait on it.
   */
  onRecorded: () => void;
  /**
   * The bot has API credentials (GITHUB_TOKEN or the App): activating a link, or following a rename, waits for
   * the API to confirm control of the repository (commands/github-link-proof.ts); a signature alone does not.
   */
  proofOfControl?: boolean | undefined;
  /**
   * Where a link's proof-of-control job goes. The only Redis call a delivery can cause in the request, and only for
   * a ping or first push of a link still to be proved (rare); pushes of active links never wait on Redis.
   */
  queue?: Pick<JobQueue, "enqueue"> | undefined;
}

// GitHub's delivery ids are GUIDs; anything else is not from GitHub and must not reach a job id.
const DELIVERY_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const EVENT_NAME = /^[a-z_]{1,64}$/;
const FULL_NAME = /^[A-Za-z0-9_.-]{1,100}\/[A-Za-z0-9_.-]{1,100}$/;

interface Claimed {
  repoId: number;
  fullName: string;
  installationId: number | undefined;
}

/** Only what selects the secret: the repository (id and name) and App installation the body claims. */
function claimedRepository(json: unknown): Claimed | undefined {
  if (typeof json !== "object" || json === null) return undefined;
  const { repository, installation } = json as { repository?: unknown; installation?: unknown };
  if (typeof repository !== "object" || repository === null) return undefined;
  const { id, full_name } = repository as { id?: unknown; full_name?: unknown };
  if (typeof id !== "number" || !Number.isSafeInteger(id) || id <= 0) return undefined;
  if (typeof full_name !== "string" || !FULL_NAME.test(full_name)) return undefined;
  const inst = (installation as { id?: unknown } | null | undefined)?.id;
  const installationId = typeof inst === "number" && Number.isSafeInteger(inst) ? inst : undefined;
  return { repoId: id, fullName: full_name, installationId };
}

type Verified = { link: LinkCandidate; via: "link" | "legacy" | "app" };

/**
 * The links whose secret signed the body. Each candidate's own secret first; the global secret only for a legacy
 * link or, in App mode, for a delivery that names an installation. At most one HMAC per candidate plus one for
 * the global secret.
 */
function verifiedLinks(
  deps: GithubRouteDeps,
  openSecret: (link: LinkCandidate) => string | undefined,
  candidates: readonly LinkCandidate[],
  claim: Claimed,
  body: Uint8Array,
  sig: string,
) {
  let global: boolean | undefined;
  const globalMatches = () => {
    global ??= deps.globalSecret !== undefined && signatureMatches(deps.globalSecret, body, sig);
    return global;
  };
  const verified: Verified[] = [];
  for (const link of candidates) {
    const own = openSecret(link);
    if (own !== undefined && signatureMatches(own, body, sig)) verified.push({ link, via: "link" });
    else if (link.legacy && globalMatches()) verified.push({ link, via: "legacy" });
    else if (deps.appMode && claim.installationId !== undefined && globalMatches()) verified.push({ link, via: "app" });
  }
  return verified;
}

/** What the route reads from a request: three headers and the raw body, already within the size limit. */
export interface GithubWebhookRequest {
  signature: string | undefined;
  event: string | undefined;
  deliveryId: string | undefined;
  /** The body's bytes as received: the signature is computed over these. */
  body: Uint8Array;
  correlationId: string;
  /** The request's logger (carries the correlation id); called only when something is logged. */
  log: () => Logger;
}

/** A finished answer: status and the JSON text of the body (`Content-Type: application/json`). */
export interface WebhookAnswer {
  status: ContentfulStatusCode;
  body: string;
}

export interface GithubWebhook {
  (request: GithubWebhookRequest): Promise<WebhookAnswer>;
  /** The 413 for a body over `maxBodyBytes`, for whichever reader found it too large. */
  tooLarge(correlationId: string, log: () => Logger): WebhookAnswer;
  readonly maxBodyBytes: number;
}

const answer = (status: ContentfulStatusCode, body: unknown): WebhookAnswer => ({ status, body: JSON.stringify(body) });

/**
 * `POST /webhooks/github`, as one function of the request's headers and raw body, used by both the Hono route
 * (githubRoute) and the node:http fast path (githubFastRoute), so the two cannot answer differently. Order matters:
 * size limit → headers → the repository the body names → the signature of that repository's link over the raw
 * bytes → only then anything else (docs/security.md, *GitHub sender*). GitHub gives up after 10 s
 * (https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks), so the handler only
 * records; the outbox relay enqueues.
 */
export function githubWebhook(deps: GithubRouteDeps): GithubWebhook {
  const record = githubPushRecorder(deps.db);
  // Opening a sealed secret is an AES-GCM decryption per link per request; the sealed value changes on rotation,
  // so it is the cache key (bounded: cleared when full).
  const opened = new Map<string, string | undefined>();
  const openSecret = (link: LinkCandidate) => {
    if (link.sealedSecret === null) return undefined;
    const key = `${link.appUuid}\n${link.sealedSecret}`;
    if (opened.has(key)) return opened.get(key);
    if (opened.size >= 1_000) opened.clear();
    const secret = openWebhookSecret(deps.secrets, link);
    opened.set(key, secret);
    return secret;
  };
  const state: RouteState = { record, openSecret, candidatesOf: cachedLinkCandidates(deps.db) };
  const handle = async (req: GithubWebhookRequest): Promise<WebhookAnswer> => {
    try {
      return await handleVerified(deps, state, req);
    } catch (err) {
      return errorAnswer(err, req.correlationId, req.log);
    }
  };
  return Object.assign(handle, {
    tooLarge: (correlationId: string, log: () => Logger) =>
      errorAnswer(tooLarge(`webhook body exceeds ${deps.maxBodyBytes} bytes`), correlationId, log),
    maxBodyBytes: deps.maxBodyBytes,
  });
}

interface RouteState {
  record: DeliveryRecorder;
  openSecret: (link: LinkCandidate) => string | undefined;
  candidatesOf: (repoId: number, fullName: string) => readonly LinkCandidate[];
}

async function handleVerified(
  deps: GithubRouteDeps,
  { record, openSecret, candidatesOf }: RouteState,
  req: GithubWebhookRequest,
): Promise<WebhookAnswer> {
  const { signature, body: bytes } = req;
  if (!signature) throw unauthorized("missing X-Hub-Signature-256");
  const event = req.event ?? "";
  const deliveryId = req.deliveryId ?? "";
  if (!EVENT_NAME.test(event)) throw badRequest("missing or malformed X-GitHub-Event");
  if (!DELIVERY_ID.test(deliveryId)) throw badRequest("missing or malformed X-GitHub-Delivery");

  // Decoded as WHATWG's `Request.text()` does (UTF-8, a leading BOM dropped, invalid bytes replaced), which is
  // what the route read before it was given raw bytes; the signature is checked over the bytes themselves.
  const body = UTF8.decode(bytes);
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    // Not JSON: nothing names a repository, so no secret can vouch for it.
    throw unauthorized("signature does not match a linked repository");
  }
  // Built only when something is logged: a child logger per request showed in the profile (bench/RESULTS.md).
  let child: Logger | undefined;
  const log = () => (child ??= req.log().child({ githubEvent: event, githubDelivery: deliveryId }));
  const claim = claimedRepository(json);
  if (claim === undefined) {
    // Events without a repository (an App's own ping, installation events) can only be the App's.
    if (deps.appMode && deps.globalSecret !== undefined && signatureMatches(deps.globalSecret, bytes, signature)) {
      log().debug("GitHub App event without a repository ignored");
      return answer(event === "ping" ? 200 : 202, { ignored: true, event });
    }
    throw unauthorized("signature does not match a linked repository");
  }

  const candidates = candidatesOf(claim.repoId, claim.fullName);
  const verified = verifiedLinks(deps, openSecret, candidates, claim, bytes, signature);
  if (verified.length === 0) {
    // Unknown repository, or signed with a secret that is not this repository's: nothing is recorded.
    throw unauthorized(
      "signature does not match the webhook secret of the repository this delivery names; check the secret shown by `tussilago apps link-github`",
    );
  }
  const actionable = event === "ping" || event === "push";
  const proof: LinkProof = { repoId: claim.repoId, fullName: claim.fullName, deliveryId, event };
  const bound: LinkCandidate[] = [];
  let proving = false;
  for (const { link, via } of verified) {
    const linkProof = via === "app" ? { ...proof, installationId: claim.installationId } : proof;
    const refusal =
      link.repoId !== null && link.repoId !== claim.repoId
        ? "repository id differs from the linked repository"
        : via === "app" && link.installationId !== null && link.installationId !== claim.installationId
          ? "installation differs from the linked one"
          : link.repoId === null && boundByAnotherTenant(link, claim.repoId, candidates, deps.proofOfControl === true)
            ? "repository is linked by another tenant"
            : undefined;
    if (refusal !== undefined) {
      if (actionable) auditLinkRefusal(deps.db, link, linkProof, refusal);
      log().warn({ appId: link.appUuid, repositoryId: claim.repoId, reason: refusal }, "GitHub delivery refused");
      continue;
    }
    bound.push(link);
    // Only a ping or a push proves control; other events are verified and ignored.
    if (!actionable) continue;
    if (deps.proofOfControl === true && needsControlProof(link, claim)) {
      // The link's admin can sign this themselves: the API must confirm it first (docs/security.md).
      if (!deps.queue) throw new Error("githubRoute: proofOfControl needs a queue for the proof job");
      await deps.queue.enqueue(QUEUE_NAMES.githubLink, {
        appUuid: link.appUuid,
        repoId: claim.repoId,
        fullName: claim.fullName,
        installationId: linkProof.installationId ?? null,
        deliveryId,
        event,
      });
      proving = true;
      log().info({ appId: link.appUuid, repositoryId: claim.repoId }, "GitHub link proof of control queued");
    } else if (applyLinkProof(deps.db, link, linkProof).activated) {
      log().info({ appId: link.appUuid, app: link.appSlug, repositoryId: claim.repoId }, "GitHub link activated");
    }
  }
  if (bound.length === 0) throw forbidden("this delivery's repository or installation is not the one linked");
  if (event !== "push") {
    if (event !== "ping") log().debug("GitHub event ignored");
    if (proving) return answer(202, { proving: true, event });
    return event === "ping" ? answer(200, { ok: true, event }) : answer(202, { ignored: true, event });
  }
  // A pending link's push activates it (or queues its proof) and nothing else: no delivery row, no push job.
  const deploying = bound.filter((l) => l.status === "active");
  if (deploying.length === 0)
    return answer(proving ? 202 : 200, proving ? { proving: true, event } : { activated: true, event });
  const fields = pushFields(json);
  if (typeof fields === "string") throw unprocessable(`invalid push payload: ${fields}`);
  const outcome = await recordGithubPush(
    { record, onRecorded: deps.onRecorded },
    {
      deliveryId,
      repository: claim.fullName,
      ref: fields.ref,
      headCommit: fields.after,
      storedPayload: () => storedPushPayload(json),
      appUuids: deploying.map((l) => l.appUuid),
    },
  );
  if (outcome.kind === "duplicate") {
    // Debug: a redelivery changes nothing, and a burst of them must not cost a line each.
    log().debug({ deliveryUuid: outcome.deliveryUuid }, "duplicate GitHub delivery ignored");
    return answer(200, { duplicate: true, delivery: outcome.deliveryUuid });
  }
  return answer(202, { accepted: true, delivery: outcome.deliveryUuid });
}

const UTF8 = new TextDecoder();
const JSON_TYPE = "application/json";

/** The Hono route: reads the body within the limit and answers what githubWebhook answers. */
export function githubRoute(deps: GithubRouteDeps, webhook: GithubWebhook = githubWebhook(deps)): Hono<AppEnv> {
  const route = new Hono<AppEnv>();
  const send = (c: Context<AppEnv>, a: WebhookAnswer) => c.body(a.body, a.status, { "Content-Type": JSON_TYPE });
  route.post(
    "/",
    requestBodyLimit({
      maxSize: webhook.maxBodyBytes,
      onError: (c) =>
        send(
          c,
          webhook.tooLarge(c.get("correlationId"), () => c.get("log")),
        ),
    }),
    async (c) =>
      send(
        c,
        await webhook({
          signature: c.req.header("x-hub-signature-256"),
          event: c.req.header("x-github-event"),
          deliveryId: c.req.header("x-github-delivery"),
          body: new Uint8Array(await c.req.arrayBuffer()),
          correlationId: c.get("correlationId"),
          log: () => c.get("log"),
        }),
      ),
  );
  return route;
}
