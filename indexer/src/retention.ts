import type { Client } from '@elastic/elasticsearch';
import { crashIndexMonth } from '@podmortem/contract';
import { beforeDeadline, messageOf, type Component, type Logger } from '@podmortem/contract/runtime';
import { crashIndices } from './template-installer.ts';
import type { IndexerTelemetry } from './telemetry.ts';

// Retention: a periodic job that deletes whole monthly indices (`<alias>-YYYY.MM`) once all of
// their month is older than the configured age. Indices are deleted one by one, by exact name;
// anything not named like ours is never touched. (The server has no delete-by-query, and deleting
// an index is also what frees the disk at once.)

const DAY_MS = 86_400_000;

/** The first instant after the month an index holds. */
function endOfMonth(month: Date): Date {
  return new Date(Date.UTC(month.getUTCFullYear(), month.getUTCMonth() + 1, 1));
}

/** Which of `indices` hold only crashes older than `retentionDays` days before `now`. */
export function expiredIndices(indices: string[], alias: string, now: Date, retentionDays: number): string[] {
  if (retentionDays <= 0) return [];
  const cutoff = now.getTime() - retentionDays * DAY_MS;
  return indices
    .filter((index) => {
      const month = crashIndexMonth(index, alias);
      return month !== undefined && endOfMonth(month).getTime() <= cutoff;
    })
    .sort();
}

export interface RetentionParams {
  es: Client;
  alias: string;
  retentionDays: number;
  intervalMs: number;
  logger: Logger;
  telemetry: IndexerTelemetry;
  now?: () => Date;
}

export class Retention implements Component {
  readonly name = 'retention';
  private readonly params: RetentionParams;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<string[]> | undefined;
  private stopped = false;

  constructor(params: RetentionParams) {
    this.params = params;
  }

  /** Schedules the job; the first run starts at once, in the background. */
  start(): Promise<void> {
    if (this.timer || this.stopped || this.params.retentionDays <= 0) return Promise.resolve();
    this.timer = setInterval(() => void this.runOnce(), this.params.intervalMs);
    this.timer.unref();
    void this.runOnce();
    return Promise.resolve();
  }

  /** One run: deletes what has expired, returns what it deleted. Never throws. */
  async runOnce(): Promise<string[]> {
    if (this.running) return this.running;
    this.running = this.run().finally(() => {
      this.running = undefined;
    });
    return this.running;
  }

  private async run(): Promise<string[]> {
    const { es, alias, retentionDays, logger, telemetry } = this.params;
    const now = (this.params.now ?? (() => new Date()))();
    const deleted: string[] = [];
    try {
      const expired = expiredIndices(await crashIndices(es, alias), alias, now, retentionDays);
      for (const index of expired) {
        if (this.stopped) break;
        await es.indices.delete({ index });
        deleted.push(index);
        telemetry.indicesDeleted.inc();
        logger.info({ index, retentionDays }, 'retention: deleted index');
      }
      telemetry.retentionRuns.inc({ status: 'ok' });
    } catch (err) {
      telemetry.retentionRuns.inc({ status: 'error' });
      logger.warn({ err: messageOf(err), deleted }, 'retention run failed; next run will try again');
    }
    return deleted;
  }

  async shutdown(deadline: number): Promise<void> {
    this.stopped = true;
    clearInterval(this.timer);
    this.timer = undefined;
    if (this.running) await beforeDeadline(this.running, deadline, []);
  }
}
