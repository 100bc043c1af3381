import { type ApprovalAction, type ApprovalView, describeApprovalAction } from "../src/domain/approvals.ts";
import { escapeSlack, type SlackBlock } from "../src/infra/slack-api.ts";

/**
 * The approval request message: posted by a gated chat command (slack-command.ts), updated after a click
 * (slack-interactions.ts). The action ids and the button value are the contract between the two.
 */
export const APPROVE_ACTION = "approval.approve";
export const DENY_ACTION = "approval.deny";

/** What the buttons carry: the request and the hash of the exact action it was made for. */
export function buttonValue(approval: Pick<ApprovalView, "uuid" | "actionHash">): string {
  return `${approval.uuid}.${approval.actionHash}`;
}

/** The request and hash a button carries; undefined for anything this module did not render. */
export function parseButtonValue(value: string | undefined): { uuid: string; hash: string } | undefined {
  const match = /^([0-9a-f-]{36})\.([0-9a-f]{64})$/.exec(value ?? "");
  return match ? { uuid: match[1] as string, hash: match[2] as string } : undefined;
}

export function describeAction(action: ApprovalAction, appSlug: string | null): string {
  return describeApprovalAction(action, `*${appSlug ?? "a destroyed app"}*`, (v) => `\`${escapeSlack(v)}\``);
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
