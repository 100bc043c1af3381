import { createTokenCommand, listTokensCommand, revokeTokenCommand } from "../../commands/tokens.ts";
import type { Db } from "../db/client.ts";
import type { ApiTokenView } from "../domain/api-tokens.ts";
import type { Logger } from "../log.ts";
import { EXIT } from "./exit-codes.ts";
import { json, type Output, table } from "./output.ts";
import type { TokenCommand } from "./token-args.ts";

const ACTOR = "cli";
const when = (d: Date | null) => (d ? d.toISOString().replace(/\.\d{3}Z$/, "Z") : "-");

function formatTokens(tokens: readonly ApiTokenView[]): string {
  if (tokens.length === 0)
    return "no API tokens yet; create one with: tussilago tokens create <operator-name> --role deployer\n";
  const rows = tokens.map((t) => [
    t.uuid,
    t.name,
    t.role,
    when(t.createdAt),
    when(t.lastUsedAt),
    t.revokedAt ? `revoked ${when(t.revokedAt)}` : "active",
  ]);
  return `${table([["TOKEN", "OPERATOR", "ROLE", "CREATED", "LAST USED", "STATE"], ...rows])}\n`;
}

/** Prints a new token alone on stdout (so `$(tussilago tokens create ci)` captures just it); the rest on stderr. */
export function executeTokens(command: TokenCommand, res: { db(): Db }, log: Logger, output: Output): number {
  switch (command.kind) {
    case "tokens-create": {
      const { token, view } = createTokenCommand({ db: res.db(), log }, { ...command, actorLabel: ACTOR });
      output.out(`${token}\n`);
      output.err(
        `API token ${view.uuid} for operator ${view.name} (${view.role}); shown once, only its hash is stored.\n` +
          "Use it from another host with TUSSILAGO_API_URL=https://<bot>/ and TUSSILAGO_API_TOKEN (or TUSSILAGO_API_TOKEN_FILE).\n",
      );
      return EXIT.ok;
    }
    case "tokens-list": {
      const tokens = listTokensCommand({ db: res.db() });
      output.out(command.json ? json(tokens) : formatTokens(tokens));
      return EXIT.ok;
    }
    case "tokens-revoke": {
      const revoked = revokeTokenCommand({ db: res.db(), log }, { target: command.target, actorLabel: ACTOR });
      for (const t of revoked) output.out(`revoked API token ${t.uuid} of ${t.name} (${t.role})\n`);
      return EXIT.ok;
    }
  }
}
