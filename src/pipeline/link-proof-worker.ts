import type { Job } from "bullmq";
import { type JobPayloads, QUEUE_NAMES } from "./queues.ts";
import type { WorkerPool } from "./worker-pool.ts";

/** What one proof of control became; also the job's return value (public ids only). */
export type LinkProofResult =
  | { kind: "activated" | "renamed" }
  | { kind: "denied"; reason: string }
  | { kind: "ignored"; reason: string };

/**
 * Confirms through the GitHub API what a verified delivery claimed for a link (docs/security.md, *Tenant admin*).
 * A command (commands/github-link-proof.ts) passed in by the composition root, so the pipeline never imports the
 * command layer (docs/architecture.md).
 */
export type LinkProofProcessor = (claim: JobPayloads["github-link"]) => Promise<LinkProofResult>;

export function registerLinkProofWorker(pool: WorkerPool, prove: LinkProofProcessor): void {
  pool.add<JobPayloads["github-link"], LinkProofResult>(
    QUEUE_NAMES.githubLink,
    (job: Job<JobPayloads["github-link"]>) => prove(job.data),
  );
}
