import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';
import { beforeDeadline, messageOf, type Component } from '@podmortem/contract/runtime';
import type { Spool } from './spool.ts';
import type { Telemetry } from './telemetry.ts';

// Finds complete spool entries and hands each to delivery, a few at a time. File events
// (fs.watch) make it prompt; a sweep at start and every sweepIntervalMs makes it sure, since file
// events can be missed (overflow, a watch lost with its folder). The queue holds ids only and at
// most maxQueued of them: entries beyond wait on disk for a later sweep.

export interface SpoolWatcherParams {
  spool: Spool;
  concurrency: number;
  maxQueued: number;
  sweepIntervalMs: number;
  /** Half-written files (no meta) older than this are the remains of a killed handler. */
  orphanAgeMs: number;
  deliver: (crashId: string, signal: AbortSignal) => Promise<unknown>;
  telemetry: Telemetry;
  logger: Logger;
}

export class SpoolWatcher implements Component {
  readonly name = 'spool-watcher';
  private readonly p: SpoolWatcherParams;
  private readonly queue: string[] = [];
  private readonly known = new Set<string>();
  private readonly running = new Set<Promise<void>>();
  private abort = new AbortController();
  private watcher: FSWatcher | undefined;
  private timer: NodeJS.Timeout | undefined;
  private sweeping: Promise<void> | undefined;
  private started = false;

  constructor(params: SpoolWatcherParams) {
    this.p = params;
  }

  get ready(): boolean {
    return this.started;
  }

  get inFlight(): number {
    return this.running.size;
  }

  async start(): Promise<void> {
    if (this.started) return;
    this.abort = new AbortController();
    await this.p.spool.create();
    for (const file of await this.p.spool.removeAgentTemporaries())
      this.p.logger.info({ file }, 'removed a temporary file of a killed agent');
    this.watch();
    this.started = true;
    await this.sweep();
    this.timer = setInterval(() => void this.sweep(), this.p.sweepIntervalMs);
  }

  /** Stops taking entries, lets deliveries in flight finish until the deadline, then abandons them. */
  async shutdown(deadline: number = Date.now() + 5000): Promise<void> {
    if (!this.started) return;
    this.started = false;
    clearInterval(this.timer);
    this.watcher?.close();
    this.watcher = undefined;
    this.queue.length = 0;
    // Retries waiting for their next attempt stop now; a step in progress is given the deadline.
    this.abort.abort();
    await beforeDeadline(Promise.allSettled([...this.running]), deadline, []);
    await this.sweeping;
  }

  /** Looks at the whole spool: queues every entry not queued yet, removes orphans. */
  sweep(): Promise<void> {
    this.sweeping ??= this.doSweep().finally(() => (this.sweeping = undefined));
    return this.sweeping;
  }

  private async doSweep(): Promise<void> {
    if (!this.started) return;
    this.p.telemetry.spoolSweeps.inc();
    if (!this.watcher) this.watch();
    try {
      for (const id of await this.p.spool.list()) this.enqueue(id);
      const removed = await this.p.spool.removeOrphans({
        olderThanMs: this.p.orphanAgeMs,
        busy: (id) => this.known.has(id),
      });
      for (const file of removed) this.p.logger.info({ file }, 'removed a spool file without an entry');
    } catch (err) {
      this.p.logger.error({ err: messageOf(err), spool: this.p.spool.dir }, 'spool sweep failed');
    }
  }

  private watch(): void {
    try {
      const watcher = watch(this.p.spool.dir, { persistent: false }, (_event, name) => {
        const id = typeof name === 'string' ? this.p.spool.completedBy(name) : undefined;
        if (id !== undefined) this.enqueue(id);
      });
      watcher.on('error', (err) => {
        this.p.logger.warn({ err: err.message }, 'spool file events lost; sweeps continue');
        watcher.close();
        if (this.watcher === watcher) this.watcher = undefined;
      });
      this.watcher = watcher;
    } catch (err) {
      this.p.logger.warn({ err: messageOf(err) }, 'spool cannot be watched; relying on sweeps');
    }
  }

  private enqueue(id: string): void {
    if (!this.started || this.known.has(id) || this.queue.length >= this.p.maxQueued) return;
    this.known.add(id);
    this.queue.push(id);
    this.pump();
  }

  private pump(): void {
    while (this.started && this.running.size < this.p.concurrency && this.queue.length > 0) {
      // Oldest first: crash ids sort by time.
      this.queue.sort();
      const id = this.queue.shift() as string;
      const run = this.p
        .deliver(id, this.abort.signal)
        .then(
          () => undefined,
          (err: unknown) => {
            if (!this.abort.signal.aborted) {
              this.p.logger.error(
                { crashId: id, err: messageOf(err) },
                'delivery stopped; the next sweep retries it',
              );
            }
          },
        )
        .finally(() => {
          this.running.delete(run);
          this.known.delete(id);
          this.p.telemetry.inFlight.set(this.running.size);
          this.pump();
        });
      this.running.add(run);
      this.p.telemetry.inFlight.set(this.running.size);
    }
  }
}
