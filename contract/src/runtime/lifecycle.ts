import type { Logger } from 'pino';

// Every long-lived part has start() and shutdown(deadline). shutdown is safe before start and
// safe twice; it stops input, flushes, and honours its deadline.

export interface Component {
  readonly name: string;
  start(): Promise<void>;
  /** Resolves by `deadline` (epoch ms) at the latest, abandoning what is not done by then. */
  shutdown(deadline: number): Promise<void>;
}

/** Resolves with the value, or with `fallback` once the deadline has passed. */
export async function beforeDeadline<T>(work: Promise<T>, deadline: number, fallback: T): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<T>((resolve) => {
    timer = setTimeout(() => resolve(fallback), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([work, late]);
  } finally {
    clearTimeout(timer);
  }
}

/** The work a consumer has in flight, so that its shutdown can wait for it (until a deadline). */
export class InFlight {
  private readonly work = new Set<Promise<unknown>>();

  /** `work`, counted until it settles. */
  track<T>(work: Promise<T>): Promise<T> {
    this.work.add(work);
    return work.finally(() => this.work.delete(work));
  }

  /** Resolves once all of it has settled, or at the deadline. */
  settled(deadline: number): Promise<void> {
    return beforeDeadline(
      Promise.allSettled([...this.work]).then(() => undefined),
      deadline,
      undefined,
    );
  }
}

/**
 * Starts components in order and, when `stop` is called, shuts them down in reverse, each within
 * what is left of `graceMs`. `stop` resolves when all are down; calling it again returns the same.
 * Signals are the caller's (runService): one process has one handler.
 */
export function runComponents(components: Component[], logger: Logger, graceMs = 25_000) {
  let stopping: Promise<void> | undefined;
  const stop = (reason: string): Promise<void> => {
    stopping ??= (async () => {
      logger.info({ reason }, 'shutting down');
      const deadline = Date.now() + graceMs;
      for (const c of [...components].reverse()) {
        try {
          await c.shutdown(deadline);
        } catch (err) {
          logger.error({ err, component: c.name }, 'shutdown failed');
        }
      }
      logger.info('stopped');
    })();
    return stopping;
  };
  const started = (async () => {
    for (const c of components) {
      await c.start();
      logger.info({ component: c.name }, 'started');
    }
  })();
  return { started, stop };
}

/** A component that only has something to close (a client), for the end of the shutdown. */
export function closing(name: string, close: () => Promise<unknown>): Component {
  return {
    name,
    start: () => Promise.resolve(),
    shutdown: (deadline) =>
      beforeDeadline(
        close().then(() => undefined),
        deadline,
        undefined,
      ),
  };
}
