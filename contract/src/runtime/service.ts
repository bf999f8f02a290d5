import type { TObject } from '@sinclair/typebox';
import type { DestinationStream, Logger } from 'pino';
import { entryPath, parseCommandLine, podmortemVersion, wrapText } from './cli.ts';
import { settingsText, unknownSettings } from './config.ts';
import { ConfigError } from './errors.ts';
import { beforeDeadline, runComponents, type Component } from './lifecycle.ts';
import { createLogger, logProcessWarnings } from './logger.ts';

// The one start-up of every service's main: its command line (--help, --version), configuration,
// logger, components started in order, one SIGTERM/SIGINT handler, a shutdown within the grace,
// and the exit status:
//   0  stopped by a signal (or stopped during start-up by one); --help and --version;
//   1  start-up failed, or a component declared the service dead (fatal);
//   2  bad configuration: one line on stderr naming the variable, before anything is served;
//      or an argument other than --help, -h and --version.

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

/** What --help says of a service, and what its variables are checked against at start-up. */
export interface ServiceAbout {
  /** One paragraph: what the service does. */
  summary: string;
  /** The configuration schema its loadConfig reads, and the variables' prefix (PODMORTEM_<SERVICE>_). */
  schema: TObject;
  prefix: string;
}

export interface ServiceSpec<C extends ServiceConfig> {
  /** The logger's name, and the start of the configuration line on stderr. */
  name: string;
  /**
   * What --help says of it, and the schema its variables are checked against; every service's
   * main gives it (test/service-cli.test.ts). Without it --help shows the usage only.
   */
  about?: ServiceAbout;
  /** Throws a ConfigError naming the variable when the environment is unusable. */
  loadConfig(): C;
  build(context: ServiceContext<C>): ServiceParts | Promise<ServiceParts>;
  /** The message of the fatal line when start-up fails. */
  startFailedMessage: string;
}

/** What the service needs of its process; the real one unless a test gives its own. */
export interface ServiceProcess {
  /** Where --help and --version write; the real stdout unless given. */
  stdout?: { write(text: string): unknown };
  stderr: { write(text: string): unknown };
  /** The arguments after the script; none unless given. */
  argv?: readonly string[];
  /** The script as run, for the usage line of --help. */
  script?: string;
  /** The environment the unknown variables are looked for in; none unless given. */
  env?: Record<string, string | undefined>;
  /** Where SIGTERM and SIGINT arrive. */
  signals: { on(signal: NodeJS.Signals, listener: (signal: NodeJS.Signals) => void): unknown };
  exit(code: number): void;
  /** The log's destination; stdout unless given. */
  log?: DestinationStream;
  /** Whether to turn Node's process warnings into log lines (the real process only). */
  processWarnings?: boolean;
}

const nodeProcess: ServiceProcess = {
  stdout: process.stdout,
  stderr: process.stderr,
  argv: process.argv.slice(2),
  ...(process.argv[1] === undefined ? {} : { script: process.argv[1] }),
  env: process.env,
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

/** What --help prints: name and version, the summary, the usage, every setting with its default. */
export function helpText(
  name: string,
  about: ServiceAbout | undefined,
  script: string | undefined,
  width = 80,
): string {
  const head = `${name} ${podmortemVersion()}`;
  const usage = `Usage: node ${entryPath(script)} [--help | --version]`;
  if (about === undefined) return [head, '', usage, ''].join('\n');
  const { prefix, schema } = about;
  return [
    head,
    '',
    ...wrapText(about.summary, width),
    '',
    usage,
    '',
    ...wrapText(
      `Settings are environment variables, shown with their defaults. A bad value stops the service before it starts, with exit status 2 and one line naming the variable; a ${prefix}* variable that is not one of these is logged as a warning at start-up.`,
      width,
    ),
    '',
    settingsText(schema, prefix, width),
    '',
  ].join('\n');
}

/** The command line's answer (help, version, a usage error), or undefined when the service is to run. */
function answerCommandLine<C extends ServiceConfig>(
  spec: ServiceSpec<C>,
  proc: ServiceProcess,
): number | undefined {
  const line = parseCommandLine(proc.argv ?? []);
  if (line.action === 'run') return undefined;
  if (line.action === 'unknown') {
    proc.stderr.write(`${spec.name}: unknown argument ${JSON.stringify(line.argument)}; see --help\n`);
    return EXIT_CONFIG;
  }
  const stdout = proc.stdout ?? process.stdout;
  try {
    stdout.write(
      line.action === 'version'
        ? `${spec.name} ${podmortemVersion()}\n`
        : helpText(spec.name, spec.about, proc.script),
    );
  } catch (err) {
    proc.stderr.write(`${spec.name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT_FAILED;
  }
  return EXIT_OK;
}

async function run<C extends ServiceConfig>(spec: ServiceSpec<C>, proc: ServiceProcess): Promise<number> {
  const answered = answerCommandLine(spec, proc);
  if (answered !== undefined) return answered;

  // Before the configuration: a misspelt variable is often why a value is missing or wrong.
  const logger = createLogger(spec.name, {}, proc.log);
  const unknown = spec.about ? unknownSettings(spec.about.schema, spec.about.prefix, proc.env ?? {}) : [];
  for (const { variable, closest } of unknown)
    logger.warn(
      { variable, closest },
      `${variable} is not a setting of ${spec.name}${closest === undefined ? '' : `; did you mean ${closest}?`}`,
    );

  let config: C;
  try {
    config = spec.loadConfig();
  } catch (err) {
    if (err instanceof ConfigError) {
      // One line whatever a rule's message holds.
      proc.stderr.write(`${spec.name}: configuration: ${err.message.replace(/\s*\n\s*/g, ' ')}\n`);
      return EXIT_CONFIG;
    }
    proc.stderr.write(`${spec.name}: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    return EXIT_FAILED;
  }

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
