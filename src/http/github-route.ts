import { Webhooks } from "@octokit/webhooks";
import { Hono } from "hono";
import { bodyLimit } from "hono/body-limit";
import { handleGithubPush, pushPayloadSchema } from "../../handlers/github-push.ts";
import type { Db } from "../db/client.ts";
import type { JobQueue } from "../pipeline/queues.ts";
import type { AppEnv } from "./context.ts";
import { badRequest, tooLarge, unauthorized, unprocessable } from "./errors.ts";

export interface GithubRouteDeps {
  webhookSecret: string;
  maxBodyBytes: number;
  db: Db;
  queue: JobQueue;
}

// GitHub's delivery ids are GUIDs; anything else is not from GitHub and must not reach a job id.
const DELIVERY_ID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const EVENT_NAME = /^[a-z_]{1,64}$/;

/**
 * `POST /webhooks/github`. Order matters: size limit → signature over the raw bytes → parse → act. GitHub gives
 * up after 10 s (https://docs.github.com/en/webhooks/using-webhooks/best-practices-for-using-webhooks), so the
 * handler only records and enqueues.
 */
export function githubRoute(deps: GithubRouteDeps): Hono<AppEnv> {
  const webhooks = new Webhooks({ secret: deps.webhookSecret });
  const route = new Hono<AppEnv>();

  route.post(
    "/",
    bodyLimit({
      maxSize: deps.maxBodyBytes,
      onError: () => {
        throw tooLarge(`webhook body exceeds ${deps.maxBodyBytes} bytes`);
      },
    }),
    async (c) => {
      const signature = c.req.header("x-hub-signature-256");
      const body = await c.req.text();
      if (!signature) throw unauthorized("missing X-Hub-Signature-256");
      let valid = false;
      try {
        valid = await webhooks.verify(body, signature);
      } catch {
        valid = false; // malformed signature header: same answer as a wrong one
      }
      if (!valid)
        throw unauthorized("signature does not match; check that the webhook secret matches GITHUB_WEBHOOK_SECRET");

      const event = c.req.header("x-github-event") ?? "";
      const deliveryId = c.req.header("x-github-delivery") ?? "";
      if (!EVENT_NAME.test(event)) throw badRequest("missing or malformed X-GitHub-Event");
      if (!DELIVERY_ID.test(deliveryId)) throw badRequest("missing or malformed X-GitHub-Delivery");

      let json: unknown;
      try {
        json = JSON.parse(body);
      } catch {
        throw badRequest("body is not valid JSON");
      }

      const log = c.get("log").child({ githubEvent: event, githubDelivery: deliveryId });
      if (event === "ping") return c.json({ ok: true, event }, 200);
      if (event !== "push") {
        log.debug("GitHub event ignored");
        return c.json({ ignored: true, event }, 202);
      }
      const parsed = pushPayloadSchema.safeParse(json);
      if (!parsed.success) {
        const issue = parsed.error.issues[0];
        throw unprocessable(`invalid push payload: ${issue ? `${issue.path.join(".")} ${issue.message}` : "unknown"}`);
      }
      const outcome = await handleGithubPush({ db: deps.db, queue: deps.queue, log }, deliveryId, parsed.data);
      if (outcome.kind === "duplicate") {
        return c.json({ duplicate: true, delivery: outcome.deliveryUuid }, 200);
      }
      return c.json({ accepted: true, delivery: outcome.deliveryUuid }, 202);
    },
  );
  return route;
}
