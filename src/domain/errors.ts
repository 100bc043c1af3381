/**
 * Domain errors carry a `status` so the HTTP edge, the CLI and Slack can answer the same way (400/403/404/409/422)
 * without knowing the domain. Their messages are safe to show users: no internal ids, paths or SQL.
 */
export class DomainError extends Error {
  readonly status: 400 | 403 | 404 | 409 | 422;
  readonly code: string;
  constructor(status: 400 | 403 | 404 | 409 | 422, code: string, message: string) {
    super(message);
    this.name = "DomainError";
    this.status = status;
    this.code = code;
  }
}

export const notFoundError = (what: string) => new DomainError(404, "not_found", `${what} not found`);
export const invalidError = (message: string) => new DomainError(422, "invalid", message);
export const conflictError = (message: string) => new DomainError(409, "conflict", message);
