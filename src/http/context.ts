import type { Logger } from "../log.ts";

/** Per-request variables every route can read (`c.get("log")`). */
export interface AppEnv {
  Variables: {
    correlationId: string;
    log: Logger;
  };
}
