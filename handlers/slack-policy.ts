import type { ChatOpsDeps } from "../commands/deps.ts";
import type { Gated } from "../commands/gate.ts";
import { changePolicyCommand, showPolicyCommand } from "../commands/policy.ts";
import { isPolicyAction, POLICY_ACTIONS, type PolicyChange } from "../src/domain/approval-policy.ts";
import type { Actor } from "../src/domain/users.ts";
import { slugSchema } from "../src/domain/validation.ts";

/** `/tussilago policy <app>` shows; `policy <app> add|remove <action>…` and `policy <app> reset` change it. */
export interface PolicySubcommand {
  kind: "policy";
  app: string;
  change?: PolicyChange | undefined;
}

/** `args` are the words after `policy`; undefined means malformed (the caller answers with the usage line). */
export function parsePolicyArgs(args: readonly string[]): PolicySubcommand | undefined {
  const [app, verb, ...actions] = args;
  if (!slugSchema.safeParse(app).success) return undefined;
  const slug = app as string;
  if (verb === undefined) return { kind: "policy", app: slug };
  if (verb === "reset")
    return actions.length === 0 ? { kind: "policy", app: slug, change: { kind: "reset" } } : undefined;
  if ((verb !== "add" && verb !== "remove") || actions.length === 0) return undefined;
  if (!actions.every(isPolicyAction) || actions.length > POLICY_ACTIONS.length) return undefined;
  return { kind: "policy", app: slug, change: { kind: verb, actions } };
}

type PolicyReply = { text: string } | Extract<Gated<unknown>, { kind: "approval" }>;

export async function runPolicySubcommand(
  deps: ChatOpsDeps,
  cmd: PolicySubcommand,
  input: { actor: Actor; correlationId: string },
): Promise<PolicyReply> {
  if (cmd.change === undefined) {
    const shown = showPolicyCommand(deps, { ...input, app: cmd.app });
    return { text: `Approvals needed on *${shown.app.slug}* (${shown.app.environment}) for: ${shown.summary}.` };
  }
  const g = await changePolicyCommand(deps, { ...input, app: cmd.app, change: cmd.change });
  if (g.kind === "approval") return g;
  return { text: `Approvals needed on *${g.result.app.slug}* now for: ${g.result.summary}.` };
}
