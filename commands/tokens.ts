import type { Db } from "../src/db/client.ts";
import { type ApiTokenView, createApiToken, listApiTokens, revokeApiTokens } from "../src/domain/api-tokens.ts";
import { recordAudit } from "../src/domain/audit.ts";
import type { Role } from "../src/domain/users.ts";
import type { Logger } from "../src/log.ts";

/**
 * `tussilago tokens …`: operator API tokens (docs/api.md). Only on the bot's host: whoever holds the data directory
 * is the operator; a token cannot mint or revoke tokens over the API.
 */
export function createTokenCommand(
  deps: { db: Db; log: Logger },
  input: { name: string; role: Role; actorLabel: string },
): { token: string; view: ApiTokenView } {
  const created = deps.db.transaction((tx) => {
    const result = createApiToken(tx, { name: input.name, role: input.role, createdBy: input.actorLabel });
    recordAudit(tx, {
      action: "token.create",
      outcome: "succeeded",
      actorLabel: input.actorLabel,
      details: { token: result.view.uuid, name: input.name, role: input.role },
    });
    return result;
  });
  deps.log.info({ token: created.view.uuid, name: input.name, role: input.role }, "api token created");
  return created;
}

export function listTokensCommand(deps: { db: Db }): ApiTokenView[] {
  return listApiTokens(deps.db);
}

export function revokeTokenCommand(
  deps: { db: Db; log: Logger },
  input: { target: string; actorLabel: string },
): ApiTokenView[] {
  const revoked = deps.db.transaction((tx) => {
    const result = revokeApiTokens(tx, input.target);
    recordAudit(tx, {
      action: "token.revoke",
      outcome: "succeeded",
      actorLabel: input.actorLabel,
      details: { tokens: result.map((t) => t.uuid), name: result[0]?.name },
    });
    return result;
  });
  deps.log.info({ tokens: revoked.map((t) => t.uuid) }, "api tokens revoked");
  return revoked;
}
