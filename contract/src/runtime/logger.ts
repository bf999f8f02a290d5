import { pino, type Logger, type LoggerOptions } from 'pino';

// JSON logs (pino). Tokens and secrets never reach a log line: the paths below are censored
// wherever they appear.

export const redactedPaths = [
  'token',
  '*.token',
  'authorization',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
  'req.headers.cookie',
  'password',
  '*.password',
];

export function createLogger(
  name: string,
  options: LoggerOptions = {},
  destination?: pino.DestinationStream,
): Logger {
  const opts: LoggerOptions = {
    name,
    level: process.env.LOG_LEVEL ?? 'info',
    redact: { paths: redactedPaths, censor: '[redacted]' },
    ...options,
  };
  return destination ? pino(opts, destination) : pino(opts);
}

/**
 * Node's own process warnings (a deprecation, a negative timer) as JSON log lines, like every
 * other line a service writes, instead of plain text on stderr. Nothing is dropped.
 */
export function logProcessWarnings(logger: Logger): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning) => logger.warn({ warning: warning.name }, warning.message));
}

export type { Logger };
