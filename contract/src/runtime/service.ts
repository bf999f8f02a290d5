import type { DestinationStream, Logger } from 'pino';
import { ConfigError } from './errors.ts';
import { beforeDeadline, runComponents, type Component } from './lifecycle.ts';
import { createLogger, logProcessWarnings } from './logger.ts';

// The one start-up of every service's main: configuration, logger, components started in order,
// one SIGTERM/SIGINT handler, a shutdown within the grace, and the exit status:
//   0  stopped by a signal (or stopped during start-up by one);
//   1  start-up failed, or a component declared the service dead (fatal);
//   2  bad configuration: one line on stderr naming the variable, before anything is served.

export const EXIT_OK = 0;
export const EXIT_FAILED = 1;
export const EXIT_CONFIG = 2;

/** What a few seconds past the grace buys: the exit, even when a component ignores its deadline. */
const EXIT_MARGIN_MS = 2_000;

export interface ServiceContext<C> {
  config: C;
  logger: Logger;
  /** Ends the service for good from inside (a consumer that will not come back): exit status 1. */
  fatal: (reason: string) => void;
}

export interface ServiceParts {
  /** In start order; shut down in reverse. */
  components: Component[];
  /** The line logged once every component has started. */
  running?: () => { fields: Record<string, unknown>; message: string };
}

/** Every service's configuration has its shutdown grace (Kubernetes' terminationGracePeriod, less a margin). */
export interface ServiceConfig {
  shutdownGraceMs: number;
}

export interface ServiceSpec<C extends ServiceConfig> {
  /** The logger's name, and the start of the configuration line on stderr. */
  name: string;
  /** Throws a ConfigError naming the variable when the environment is unusable. */
  loadConfig(): C;
  build(context: ServiceContext<C>): ServiceParts | Promise<ServiceParts>;
  /** The message of the fatal line when start-up fails. */
  startFailedMessage: string;
}

/** What the service needs of its process; the real one unless a test gives its own. */
export interface ServiceProcess {
  stderr: { write(text: string): unknown };
  /** Where SIGTERM and SIGINT arrive. */
  signals: { on(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown };
  exit(code: number): void;
  /** The log's destination; stdout unless given. */
  log?: DestinationStream;
  /** Whether to turn Node's process warnings into log lines (the real process only). */
  processWarnings?: boolean;
}

const nodeProcess: ServiceProcess = {
  stderr: process.stderr,
  signals: process,
  exit: (code) => process.exit(code),
  processWarnings: true,
};

/** Runs the service until it stops; calls `exit` with its status, and resolves with it too. */
export async function runService<C extends ServiceConfig>(
  spec: ServiceSpec<C>,
  proc: ServiceProcess = nodeProcess,
): Promise<number> {
  const code = await run(spec, proc);
  proc.exit(code);
  return code;
}

async function run<C extends ServiceConfig>(spec: ServiceSpec<C>, proc: ServiceProcess): Promise<number> {
  let config: C;
  try {
    config = spec.loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      proc.stderr.write(`${spec.name}: configuration: ${err.message}\n`);
      return EXIT_CONFIG;
    }
    proc.stderr.write(`${spec.name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT_FAILED;
  }

  const logger = createLogger(spec.name, {}, proc.log);
  if (proc.processWarnings) logProcessWarnings(logger);
  const graceMs = config.shutdownGraceMs;

  let code = EXIT_OK;
  let stopRequested: (reason: string) => void = () => undefined;
  const stopped = new Promise<string>((resolve) => (stopRequested = resolve));
  // Kept after the first: a second signal does not cut the shutdown short; the grace bounds it.
  const onSignal = (signal: NodeJS.Signals) => stopRequested(signal);
  proc.signals.on('SIGTERM', onSignal);
  proc.signals.on('SIGINT', onSignal);
  const fatal = (reason: string) => {
    code = EXIT_FAILED;
    stopRequested(reason);
  };

  let parts: ServiceParts;
  try {
    parts = await spec.build({ config, logger, fatal });
  } catch (err) {
    logger.fatal({ err }, spec.startFailedMessage);
    return EXIT_FAILED;
  }
  const { started, stop } = runComponents(parts.components, logger, graceMs);
  let stopping = false;
  void started.then(
    () => {
      const running = parts.running?.();
      if (running && !stopping) logger.info(running.fields, running.message);
    },
    (err: unknown) => {
      // A start interrupted by the shutdown is not a failed one.
      if (stopping) return;
      logger.fatal({ err }, spec.startFailedMessage);
      fatal('start-up failed');
    },
  );
  const reason = await stopped;
  stopping = true;
  const finished = await beforeDeadline(
    stop(reason).then(() => true),
    Date.now() + graceMs + EXIT_MARGIN_MS,
    false,
  );
  if (!finished) logger.error({ graceMs }, 'shutdown overran its grace; exiting anyway');
  return code;
}
