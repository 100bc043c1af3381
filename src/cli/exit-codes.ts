/** Exit codes: 0 ok, 1 error or failed deployment, 2 usage, 3 superseded/cancelled, 130 stopped by Ctrl-C. */
export const EXIT = { ok: 0, error: 1, usage: 2, superseded: 3, interrupted: 130 } as const;
