/** An environment problem the operator fixes; the CLI prints it as one `error:` line and exits 1. */
export class CliEnvError extends Error {
  constructor(message: string) {
    super(message);
    this.name = "CliEnvError";
  }
}
