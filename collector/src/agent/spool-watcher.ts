import { watch, type FSWatcher } from 'node:fs';
import { mkdir, readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { isCrashId } from '@podmortem/contract';
import { beforeDeadline, messageOf, type Component } from '@podmortem/contract/runtime';
import { AGENT_STATE_SUFFIX } from './delivery.ts';
import { listSpool, SPOOL_CORE_SUFFIX, SPOOL_META_SUFFIX, SPOOL_TMP_PREFIX } from '../spool-entry.ts';
import type { SpoolUsage, Telemetry } from './telemetry.ts';

// Finds complete spool entries (a <crash-id>.meta.json) and hands each to delivery, a few at a
// time. File events (fs.watch) make it prompt; a sweep at start and every sweepIntervalMs makes
// it sure, since file events can be missed (overflow, a watch lost with its folder). The queue
// holds ids only and at most maxQueued of them: entries beyond wait on disk for a later sweep.

export interface SpoolWatcherParams {
  spoolDir: string;
  concurrency: number;
  maxQueued: number;
  sweepIntervalMs: number;
  /** Half-written files (no meta) older than this are the remains of a killed handler. */
  orphanAgeMs: number;
  deliver: (crashId: string, signal: AbortSignal) => Promise<unknown>;
  telemetry: Telemetry;
  logger: Logger;
}

const ENTRY_FILE = new RegExp(
  `^(${SPOOL_TMP_PREFIX.replace('.', '\\.')})?([0-9a-f-]{36})(${[
    SPOOL_META_SUFFIX,
    SPOOL_CORE_SUFFIX,
    AGENT_STATE_SUFFIX,
  ]
    .map((s) => s.replaceAll('.', '\\.'))
    .join('|')})(\\.[0-9a-f]+\\.tmp)?$`,
);

/** Entries and bytes of crash files in the spool (not the handler's log or state). */
export async function spoolUsage(spoolDir: string): Promise<SpoolUsage> {
  let entries = 0;
  let bytes = 0;
  for (const name of await readdir(spoolDir)) {
    const m = ENTRY_FILE.exec(name);
    if (!m?.[2] || !isCrashId(m[2])) continue;
    if (!m[1] && m[3] === SPOOL_META_SUFFIX && !m[4]) entries++;
    try {
      bytes += (await stat(join(spoolDir, name))).size;
    } catch {
      // Delivered meanwhile.
    }
  }
  return { entries, bytes };
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
    await mkdir(this.p.spoolDir, { recursive: true, mode: 0o700 });
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
      for (const id of await listSpool(this.p.spoolDir)) this.enqueue(id);
      await this.removeOrphans();
    } catch (err) {
      this.p.logger.error({ err: messageOf(err), spool: this.p.spoolDir }, 'spool sweep failed');
    }
  }

  private watch(): void {
    try {
      const watcher = watch(this.p.spoolDir, { persistent: false }, (_event, name) => {
        if (
          typeof name !== 'string' ||
          name.startsWith(SPOOL_TMP_PREFIX) ||
          !name.endsWith(SPOOL_META_SUFFIX)
        )
          return;
        const id = name.slice(0, -SPOOL_META_SUFFIX.length);
        if (isCrashId(id)) this.enqueue(id);
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

  private async removeOrphans(): Promise<void> {
    const names = await readdir(this.p.spoolDir);
    const metas = new Set(
      names
        .filter((n) => n.endsWith(SPOOL_META_SUFFIX) && !n.startsWith(SPOOL_TMP_PREFIX))
        .map((n) => n.slice(0, -SPOOL_META_SUFFIX.length)),
    );
    const now = Date.now();
    for (const name of names) {
      const m = ENTRY_FILE.exec(name);
      const id = m?.[2];
      if (!m || !id || !isCrashId(id) || metas.has(id) || this.known.has(id)) continue;
      const path = join(this.p.spoolDir, name);
      try {
        // Agent state without its meta: the entry was delivered. Anything else may still be
        // being written by a handler, until it is old.
        const isState = !m[1] && m[3] === AGENT_STATE_SUFFIX;
        if (!isState && now - (await stat(path)).mtimeMs < this.p.orphanAgeMs) continue;
        await rm(path, { force: true });
        this.p.logger.info({ file: name }, 'removed a spool file without an entry');
      } catch {
        // Gone meanwhile.
      }
    }
  }
}
