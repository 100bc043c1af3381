import type { App, BlockAction, ButtonAction } from "@slack/bolt";
import { type DecideOutcome, decideCommand } from "../commands/approvals.ts";
import type { ApprovalAction, ApprovalView, Decision } from "../src/domain/approvals.ts";
import { DomainError } from "../src/domain/errors.ts";
import { ensureSlackUser } from "../src/domain/users.ts";
import { escapeSlack, type SlackBlock } from "../src/infra/slack-api.ts";
import type { Logger } from "../src/log.ts";
import { linkDeploymentChannel } from "../src/reporters/slack-thread.ts";
import type { ChatOpsSlackDeps } from "./slack-command.ts";

export interface SlackInteractionsDeps {
  logger: Logger;
  chatops?: ChatOpsSlackDeps | undefined;
}

export const APPROVE_ACTION = "approval.approve";
export const DENY_ACTION = "approval.deny";

/** What the buttons carry: the request and the hash of the exact action it was made for. */
export function buttonValue(approval: Pick<ApprovalView, "uuid" | "actionHash">): string {
  return `${approval.uuid}.${approval.actionHash}`;
}

function parseButtonValue(value: string | undefined): { uuid: string; hash: string } | undefined {
  const match = /^([0-9a-f-]{36})\.([0-9a-f]{64})$/.exec(value ?? "");
  return match ? { uuid: match[1] as string, hash: match[2] as string } : undefined;
}

export function describeAction(action: ApprovalAction, appSlug: string | null): string {
  const app = `*${appSlug ?? "a destroyed app"}*`;
  switch (action.kind) {
    case "deploy":
      // A branch or tag moves: say which commit will ship, so the approver is not misled.
      return /^[0-9a-f]{40}$/.test(action.ref)
        ? `deploy commit \`${action.ref.slice(0, 12)}\` to ${app}`
        : `deploy \`${escapeSlack(action.ref)}\` to ${app} (whatever it points to when approved)`;
    case "policy.set":
      return action.actions === null
        ? `reset the approval policy of ${app} to its environment's default`
        : `set the approval policy of ${app} to: ${action.actions.length === 0 ? "nothing" : action.actions.join(", ")}`;
    case "destroy":
      return `destroy ${app}`;
    case "rollback":
      return `roll ${app} back to v${action.version}`;
    case "restart":
      return `restart ${app} (v${action.version})`;
    case "env.set":
      return `set env \`${action.key}\` on ${app} (value hidden)`;
    case "env.unset":
      return `unset env \`${action.key}\` on ${app}`;
    case "db.drop":
      return `drop the ${action.store ?? "postgres"} store of ${app} (all its data)`;
  }
}

/** The request message: pending → buttons; decided → who and when, no buttons. */
export function approvalMessage(a: ApprovalView, now: number): { text: string; blocks: SlackBlock[] } {
  const what = describeAction(a.action, a.appSlug);
  const status = a.status === "pending" && a.expiresAt.getTime() <= now ? "expired" : a.status;
  if (status === "pending") {
    const text = `Approval needed: ${a.requester.label} asks to ${what}.`;
    return {
      text,
      blocks: [
        { type: "section", text: { type: "mrkdwn", text: `${text}\nExpires ${a.expiresAt.toISOString()}.` } },
        {
          type: "context",
          elements: [{ type: "mrkdwn", text: `Request ${a.uuid} · action ${a.actionHash.slice(0, 12)}` }],
        },
        {
          type: "actions",
          block_id: `approval-${a.uuid}`,
          elements: [
            {
              type: "button",
              action_id: APPROVE_ACTION,
              style: "primary",
              text: { type: "plain_text", text: "Approve" },
              value: buttonValue(a),
            },
            {
              type: "button",
              action_id: DENY_ACTION,
              style: "danger",
              text: { type: "plain_text", text: "Deny" },
              value: buttonValue(a),
            },
          ],
        },
      ],
    };
  }
  const when = a.decidedAt ? ` at ${a.decidedAt.toISOString()}` : "";
  const verdict =
    status === "approved"
      ? `:white_check_mark: Approved by ${a.deciderLabel}${when}`
      : status === "denied"
        ? `:no_entry: Denied by ${a.deciderLabel}${when}`
        : `:hourglass: Expired at ${a.expiresAt.toISOString()}`;
  const text = `${a.requester.label} asked to ${what}. ${verdict}.`;
  return { text, blocks: [{ type: "section", text: { type: "mrkdwn", text } }] };
}

function outcomeLine(outcome: DecideOutcome): string {
  switch (outcome.kind) {
    case "approved":
      switch (outcome.effect.kind) {
        case "deployment":
          return `Approved; deployment ${outcome.effect.deployment.uuid} is queued.`;
        case "queued":
          return "Approved; the work is queued and runs shortly (the audit log records each step).";
        case "applied":
          return "Approved; the action has been applied.";
      }
      break;
    case "denied":
      return "Denied.";
    case "expired":
      return "This request has expired; ask again.";
    case "unchanged":
      return `Already ${outcome.approval.status}.`;
  }
}

/**
 * Approve/Deny buttons. Bolt only calls this after the receiver verified Slack's signature, so a forged or unsigned
 * payload never gets here; the domain then applies every approval rule. Other block actions are acknowledged only.
 */
export function registerSlackInteractions(app: App, deps: SlackInteractionsDeps): void {
  app.action<BlockAction<ButtonAction>>(
    { type: "block_actions", action_id: /^approval\.(approve|deny)$/ },
    async ({ ack, action, body, respond, context }) => {
      await ack();
      const correlationId = typeof context.correlationId === "string" ? context.correlationId : undefined;
      const log = deps.logger.child({ correlationId, slackAction: action.action_id });
      const tell = (text: string) =>
        respond({ response_type: "ephemeral", replace_original: false, text }).catch((err: unknown) =>
          log.warn({ err }, "could not answer the click"),
        );
      const chatops = deps.chatops;
      const target = parseButtonValue(action.value);
      if (!chatops || !target) {
        log.warn("approval click ignored: not configured or malformed value");
        return;
      }
      const decision: Decision = action.action_id === APPROVE_ACTION ? "approved" : "denied";
      try {
        const actor = ensureSlackUser(chatops.db, {
          teamId: body.user.team_id ?? body.team?.id ?? "",
          userId: body.user.id,
          displayName: body.user.username ?? body.user.name ?? body.user.id,
        });
        const outcome = await decideCommand(chatops, { ...target, decision, actor, correlationId });
        // The deployment an approval started reports in the channel where the request was posted.
        if (outcome.kind === "approved" && outcome.effect.kind === "deployment" && outcome.approval.slackChannelId) {
          linkDeploymentChannel(chatops.db, outcome.effect.deployment.uuid, outcome.approval.slackChannelId);
        }
        log.info({ approvalId: target.uuid, outcome: outcome.kind }, "approval click");
        if (outcome.kind !== "unchanged") await updateRequestMessage(chatops, outcome.approval, log);
        await tell(outcomeLine(outcome));
      } catch (err) {
        if (err instanceof DomainError) {
          log.info({ approvalId: target.uuid, code: err.code }, "approval click refused");
          await tell(`Not done: ${err.message}`);
          return;
        }
        log.error({ err, approvalId: target.uuid }, "approval click failed");
        await tell(`Something went wrong. Reference: ${correlationId ?? "none"}`);
      }
    },
  );
  app.action({ type: "block_actions", action_id: /^(?!approval\.)/ }, async ({ ack, action, context }) => {
    await ack();
    deps.logger.info(
      { correlationId: context.correlationId, slackAction: "action_id" in action ? action.action_id : undefined },
      "block action acknowledged; no handler yet",
    );
  });
}

async function updateRequestMessage(deps: ChatOpsSlackDeps, approval: ApprovalView, log: Logger): Promise<void> {
  if (!approval.slackChannelId || !approval.slackMessageTs) return;
  try {
    await deps.slack.updateMessage({
      channel: approval.slackChannelId,
      ts: approval.slackMessageTs,
      ...approvalMessage(approval, deps.now()),
    });
  } catch (err) {
    log.warn({ err, approvalId: approval.uuid }, "could not update the approval message");
  }
}
