import type { ApprovalAction, ApprovalView } from "../src/domain/approvals.ts";
import { describeCounts } from "../src/domain/formation.ts";
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
    case "scale":
      return `scale ${app} to ${escapeSlack(describeCounts(action.counts))}`;
    case "env.set":
      return `set env \`${action.key}\` on ${app} (value hidden)`;
    case "env.unset":
      return `unset env \`${action.key}\` on ${app}`;
    case "db.drop":
      return `drop the ${action.store ?? "postgres"} store of ${app} (all its data)`;
    case "run":
      return `run \`${escapeSlack(action.command.join(" ").slice(0, 300))}\` in ${app} (v${action.version})`;
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
