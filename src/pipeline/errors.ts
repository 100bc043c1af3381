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

/**
 * A failure of this host that no retry fixes and the tenant cannot fix either (the build's base image is missing):
 * the deployment fails at once, and `message` names the component, the cause and what an operator runs to fix it.
 */
export class PlatformError extends Error {
  readonly stage: string;
  constructor(stage: string, message: string) {
    super(message);
    this.name = "PlatformError";
    this.stage = stage;
  }
}

/** Another deployment of the same app is running; the job waits and tries again (not a failure). */
export class AppBusyError extends Error {
  constructor() {
    super("another deployment of this app is running");
    this.name = "AppBusyError";
  }
}
