import type { DeliveryOutbox, PendingDelivery } from "../domain/webhook-deliveries.ts";
import type { Logger } from "../log.ts";
import { type JobQueue, pushJobId, QUEUE_NAMES } from "./queues.ts";

export interface DeliveryRelayOptions {
  outbox: DeliveryOutbox;
  queue: JobQueue;
  log: Logger;
  /** The safety net under the in-process wake-up: recorded rows are looked for at least this often. */
  pollMs?: number;
  /** Woken passes start at most this often (the first after a quiet spell at once). */
  wakeIntervalMs?: number;
  /** Rows moved per pass step; a burst drains in steps of this size. */
  batchSize?: number;
  /**
   * Splits a batch of recorded deliveries into those that need a push job and those the job would only ignore,
   * which are marked `ignored` without one (the composition root passes the push mapping's own triage,
   * commands/push-deploy.ts). Without it every delivery gets a job.
   */
  triage?: (rows: readonly PendingDelivery[]) => { enqueue: PendingDelivery[]; ignore: PendingDelivery[] };
  /** How often a summary of the deliveries moved is logged (one info line, only when there were some). */
  summaryMs?: number;
  /** Back-off after a failed pass: doubling from `minBackoffMs` up to this, with jitter. */
  maxBackoffMs?: number;
  minBackoffMs?: number;
}

/**
 * The outbox relay of GitHub deliveries (docs/architecture.md, *Ingress*): the webhook route only records a
 * delivery in SQLite and answers, and this loop puts recorded-but-not-enqueued rows on the BullMQ queue, so a
 * webhook is answered within GitHub's 10 s whatever Redis does.
 *
 * - Woken right after a record (`wake`, coalesced to one pass per event-loop turn), and polling every `pollMs`,
 *   which also picks up rows a crash left behind.
 * - One pass at a time. While Redis is unreachable an add waits in ioredis's offline queue (the bot's connection
 *   retries for ever, src/infra/redis.ts): the pass waits with it, nothing is re-added meanwhile, and the queue
 *   catches up as soon as the connection is back. A pass that fails (Redis answers an error) backs off, bounded.
 * - With `triage`, a delivery no app follows is marked `ignored` in the same pass, without a job: one SQLite
 *   transaction per batch instead of four Redis round trips and a payload parse per delivery.
 * - Job ids are derived from `X-GitHub-Delivery`: a crash between the add and the marking re-adds the same id on
 *   the next start, which BullMQ ignores. So nothing recorded is lost and nothing is enqueued twice.
 */
export class DeliveryRelay {
  readonly #outbox: DeliveryOutbox;
  readonly #queue: JobQueue;
  readonly #log: Logger;
  readonly #pollMs: number;
  readonly #batchSize: number;
  readonly #minBackoffMs: number;
  readonly #maxBackoffMs: number;
  readonly #triage: DeliveryRelayOptions["triage"];
  readonly #summaryMs: number;
  #summaryTimer: NodeJS.Timeout | undefined;
  readonly #moved = { enqueued: 0, ignored: 0 };
  #pass: Promise<void> | undefined;
  #again = false;
  #wakeScheduled = false;
  #lastWokenPass = Number.NEGATIVE_INFINITY;
  readonly #wakeIntervalMs: number;
  #failures = 0;
  #retryAt = 0;
  #retryTimer: NodeJS.Timeout | undefined;
  #pollTimer: NodeJS.Timeout | undefined;
  #stopped = false;

  constructor(options: DeliveryRelayOptions) {
    this.#outbox = options.outbox;
    this.#queue = options.queue;
    this.#log = options.log;
    this.#pollMs = options.pollMs ?? 1_000;
    this.#batchSize = options.batchSize ?? 500;
    this.#minBackoffMs = options.minBackoffMs ?? 200;
    this.#maxBackoffMs = options.maxBackoffMs ?? 5_000;
    this.#triage = options.triage;
    this.#summaryMs = options.summaryMs ?? 60_000;
    this.#wakeIntervalMs = options.wakeIntervalMs ?? 25;
  }

  /** Deliveries put on the queue and marked ignored since the relay was created (tests, the summary line). */
  get moved(): Readonly<{ enqueued: number; ignored: number }> {
    return { ...this.#moved };
  }

  /** Starts polling and runs a first pass at once (rows left by a previous run). */
  start(): void {
    this.#stopped = false;
    this.#pollTimer = setInterval(() => this.#kick(), this.#pollMs);
    this.#pollTimer.unref();
    // Per-delivery lines are debug: at a few thousand deliveries a second they cost more than the work they log.
    let last = { ...this.#moved };
    this.#summaryTimer = setInterval(() => {
      const now = { ...this.#moved };
      const enqueued = now.enqueued - last.enqueued;
      const ignored = now.ignored - last.ignored;
      last = now;
      if (enqueued + ignored > 0)
        this.#log.info({ enqueued, ignored, periodMs: this.#summaryMs }, "deliveries relayed");
    }, this.#summaryMs);
    this.#summaryTimer.unref();
    this.#kick();
  }

  /**
   * Called after a record. Deferred to the next turn of the event loop, so the answer goes out first; and at most
   * one woken pass per `wakeIntervalMs`, so that under load a pass moves a batch (one SQLite transaction, one
   * lookup of the apps) instead of the few deliveries of one turn, at the price of that much delay.
   */
  wake(): void {
    if (this.#wakeScheduled || this.#stopped) return;
    this.#wakeScheduled = true;
    const run = () => {
      this.#wakeScheduled = false;
      this.#lastWokenPass = performance.now();
      this.#kick();
    };
    const wait = this.#lastWokenPass + this.#wakeIntervalMs - performance.now();
    if (wait <= 0) setImmediate(run);
    else setTimeout(run, wait).unref();
  }

  /** Runs passes until nothing recorded is left (tests, and the bench's burst); rejects if a pass fails. */
  async flush(): Promise<void> {
    for (;;) {
      if (this.#pass) await this.#pass;
      else if (this.#outbox.pending(1).length > 0) await this.#runPass(true);
      else return;
    }
  }

  /** Stops the loop; waits for a pass in flight at most `timeoutMs` (it may be waiting for Redis). */
  async stop(timeoutMs = 2_000): Promise<void> {
    this.#stopped = true;
    clearInterval(this.#pollTimer);
    clearInterval(this.#summaryTimer);
    clearTimeout(this.#retryTimer);
    const pass = this.#pass;
    if (!pass) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([pass, new Promise((r) => (timer = setTimeout(r, timeoutMs)))]);
    clearTimeout(timer);
  }

  #kick(): void {
    if (this.#stopped) return;
    if (this.#pass) {
      this.#again = true;
      return;
    }
    if (Date.now() < this.#retryAt) return; // backing off; the retry timer kicks
    void this.#runPass(false);
  }

  #runPass(rethrow: boolean): Promise<void> {
    const pass = this.#drain().then(
      () => {
        if (this.#failures > 0) this.#log.info({ failedPasses: this.#failures }, "delivery relay caught up");
        this.#failures = 0;
        this.#retryAt = 0;
      },
      (err: unknown) => {
        this.#failures++;
        const delay = Math.min(this.#maxBackoffMs, this.#minBackoffMs * 2 ** Math.min(this.#failures - 1, 10));
        const jittered = Math.round(delay / 2 + Math.random() * (delay / 2));
        this.#retryAt = Date.now() + jittered;
        // One line per outage, then one per ten failed passes: a long outage must not flood the log.
        if (this.#failures === 1 || this.#failures % 10 === 0) {
          this.#log.warn({ err, failedPasses: this.#failures, retryInMs: jittered }, "delivery relay: enqueue failed");
        }
        clearTimeout(this.#retryTimer);
        this.#retryTimer = setTimeout(() => this.#kick(), jittered);
        this.#retryTimer.unref();
        if (rethrow) throw err;
      },
    );
    this.#pass = pass.finally(() => {
      this.#pass = undefined;
      if (this.#again) {
        this.#again = false;
        this.#kick();
      }
    });
    return this.#pass;
  }

  async #drain(): Promise<void> {
    for (;;) {
      this.#again = false;
      const rows = this.#outbox.pending(this.#batchSize);
      if (rows.length === 0) return;
      const { enqueue, ignore } = this.#triage ? this.#triage(rows) : { enqueue: rows, ignore: [] };
      if (ignore.length > 0) {
        this.#outbox.markIgnored(ignore.map((r) => r.uuid));
        this.#moved.ignored += ignore.length;
      }
      const settled = await Promise.allSettled(
        enqueue.map(async (row) => ({
          uuid: row.uuid,
          jobId: await this.#queue.enqueue(
            QUEUE_NAMES.githubPush,
            { deliveryUuid: row.uuid },
            pushJobId(row.deliveryId),
          ),
        })),
      );
      const marked = settled.flatMap((s) => (s.status === "fulfilled" ? [s.value] : []));
      if (marked.length > 0) this.#outbox.markEnqueued(marked);
      this.#moved.enqueued += marked.length;
      this.#log.debug({ enqueued: marked.length, ignored: ignore.length }, "deliveries relayed");
      const failed = settled.find((s) => s.status === "rejected");
      if (failed) throw failed.reason;
      if (rows.length < this.#batchSize && !this.#again) return;
    }
  }
}
