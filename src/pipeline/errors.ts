/**
 * A failure a retry cannot fix (the tenant's build broke, the health check failed, the repo has no start command):
 * the deployment fails at once with `reason`, shown to users as is, and `detail` (a bounded, escaped-later log
 * excerpt). Anything else is treated as infrastructure trouble and retried with capped backoff.
 */
export class TenantError extends Error {
  readonly stage: string;
  readonly detail: string;
  constructor(stage: string, reason: string, detail = "") {
    super(reason);
    this.name = "TenantError";
    this.stage = stage;
    this.detail = detail;
  }
}

/** Another deployment of the same app is running; the job waits and tries again (not a failure). */
export class AppBusyError extends Error {
  constructor() {
    super("another deployment of this app is running");
    this.name = "AppBusyError";
  }
}
