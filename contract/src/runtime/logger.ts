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

export type { Logger };
