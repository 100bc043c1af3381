import { eq } from "drizzle-orm";
import type { Db } from "../../src/db/client.ts";
import { apps } from "../../src/db/schema.ts";
import type { SecretBox } from "../../src/domain/crypto.ts";
import { newWebhookSecret, rotateLinkSecret, sealWebhookSecret } from "../../src/domain/github-links.ts";

/**
 * Puts an app's GitHub link straight into the active state a proved link has (signed ping plus the challenge read
 * back through the API; for tests about what happens after activation); returns the link's webhook secret.
 */
export function activateLinkForTest(
  db: Db,
  secrets: SecretBox,
  appUuid: string,
  link: { repo: string; repoId: number; installationId?: number },
): string {
  const secret = newWebhookSecret();
  rotateLinkSecret(db, appUuid, sealWebhookSecret(secrets, appUuid, secret));
  db.update(apps)
    .set({
      githubRepo: link.repo,
      githubLinkStatus: "active",
      githubRepoId: link.repoId,
      githubInstallationId: link.installationId ?? null,
      githubLinkProof: "challenge-file",
    })
    .where(eq(apps.uuid, appUuid))
    .run();
  return secret;
}
