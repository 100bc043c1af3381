import type { App, BlockAction, ButtonAction } from "@slack/bolt";
import { type DecideOutcome, decideCommand } from "../commands/approvals.ts";
import type { ApprovalView, Decision } from "../src/domain/approvals.ts";
import { DomainError } from "../src/domain/errors.ts";
import { ensureSlackUser } from "../src/domain/users.ts";
import type { Logger } from "../src/log.ts";
import { linkDeploymentChannel } from "../src/reporters/slack-thread.ts";
import { APPROVE_ACTION, approvalMessage, parseButtonValue } from "./slack-approval-message.ts";
import type { ChatOpsSlackDeps } from "./slack-command.ts";

export interface SlackInteractionsDeps {
  logger: Logger;
  chatops?: ChatOpsSlackDeps | undefined;
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
        log.info({ approvalId: target.uuid, outcome: outcome.kind }, "approval click");
        await reflectDecisionInSlack(chatops, outcome, log);
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

/**
 * After a decision, from a click here or on the web dashboard: a deployment the approval started reports in the
 * channel where the request was posted, and the request message loses its buttons.
 */
export async function reflectDecisionInSlack(
  deps: Pick<ChatOpsSlackDeps, "db" | "slack" | "now">,
  outcome: DecideOutcome,
  log: Logger,
): Promise<void> {
  if (outcome.kind === "approved" && outcome.effect.kind === "deployment" && outcome.approval.slackChannelId) {
    linkDeploymentChannel(deps.db, outcome.effect.deployment.uuid, outcome.approval.slackChannelId);
  }
  if (outcome.kind !== "unchanged") await updateRequestMessage(deps, outcome.approval, log);
}

async function updateRequestMessage(
  deps: Pick<ChatOpsSlackDeps, "slack" | "now">,
  approval: ApprovalView,
  log: Logger,
): Promise<void> {
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
