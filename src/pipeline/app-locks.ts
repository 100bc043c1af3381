/**
 * One lock per app, in the bot's process: what changes an app's live containers and route (a deployment's switch,
 * reconcile's and the exit watcher's restore, a `scale`) runs under it, one at a time per app. Waiters are served
 * in order; a holder that throws releases the lock.
 */
export class AppLocks {
  readonly #tails = new Map<string, Promise<void>>();

  async run<T>(appUuid: string, fn: () => Promise<T>): Promise<T> {
    const before = this.#tails.get(appUuid) ?? Promise.resolve();
    let release = () => {};
    const mine = new Promise<void>((resolve) => {
      release = resolve;
    });
    const tail = before.then(() => mine);
    this.#tails.set(appUuid, tail);
    await before;
    try {
      return await fn();
    } finally {
      release();
      // The last holder leaves no entry behind: apps come and go.
      if (this.#tails.get(appUuid) === tail) this.#tails.delete(appUuid);
    }
  }

  /** Apps whose lock is held or waited for (for tests and diagnostics). */
  get held(): number {
    return this.#tails.size;
  }
}
