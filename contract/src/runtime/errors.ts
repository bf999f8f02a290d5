// The base of every service's error registry (each service keeps its own errors.ts with its
// PM_ERR_* codes). An error says whether trying again can help, and keeps its cause.

export interface PodmortemErrorOptions {
  retriable?: boolean;
  /** HTTP status, where the error reaches an HTTP caller. */
  status?: number;
  cause?: unknown;
}

export class PodmortemError extends Error {
  readonly code: string;
  readonly retriable: boolean;
  readonly status: number | undefined;

  constructor(code: string, message: string, options: PodmortemErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'PodmortemError';
    this.code = code;
    this.retriable = options.retriable ?? false;
    this.status = options.status;
  }
}

/** Bad configuration: the service exits before serving anything, naming the key. */
export class ConfigError extends PodmortemError {
  readonly key: string;
  constructor(key: string, message: string) {
    super('PM_ERR_CONFIG', `${key}: ${message}`);
    this.name = 'ConfigError';
    this.key = key;
  }
}

export class RetriesExhaustedError extends PodmortemError {
  readonly attempts: number;
  constructor(what: string, attempts: number, cause: unknown) {
    super('PM_ERR_RETRIES_EXHAUSTED', `${what}: gave up after ${attempts} attempts: ${messageOf(cause)}`, {
      cause,
    });
    this.name = 'RetriesExhaustedError';
    this.attempts = attempts;
  }
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/**
 * Whether trying again can help. Programmer errors (TypeError, RangeError…) never are; our own
 * errors say so; anything else from I/O (network, broker, server) is presumed passing.
 */
export function isRetriable(err: unknown): boolean {
  if (err instanceof PodmortemError) return err.retriable;
  if (err instanceof TypeError || err instanceof RangeError || err instanceof SyntaxError) return false;
  if (err instanceof Error && 'retriable' in err && typeof err.retriable === 'boolean') return err.retriable;
  return true;
}
