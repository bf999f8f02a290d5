// The base of every service's error registry (each service keeps its own errors.ts with its
// PM_ERR_* codes). An error says whether trying again can help, and keeps its cause.

export interface PodmortemErrorOptions {
  retriable?: boolean;
  /** HTTP status, where the error reaches an HTTP caller. */
  status?: number;
  cause?: unknown;
}

/** What every service's registry says of one of its codes. */
export interface ErrorDefinition {
  /** A summary of what went wrong; the details go into each error's message. */
  readonly message: string;
  /** HTTP status, for the codes that reach an HTTP caller. */
  readonly status?: number;
  readonly retriable: boolean;
}

export type ErrorRegistry = Readonly<Record<string, ErrorDefinition>>;

const CODE = /^PM_ERR_[A-Z0-9_]+$/;

/**
 * A service's registry: code → { message, status, retriable }, checked once at start-up so a
 * malformed entry fails every test rather than one request in production.
 */
export function defineErrors<const R extends ErrorRegistry>(definitions: R): R {
  for (const [code, def] of Object.entries(definitions)) {
    if (!CODE.test(code)) throw new RangeError(`error code ${code} is not PM_ERR_*`);
    if (def.message === '') throw new RangeError(`error code ${code} has no message`);
    if (def.status !== undefined && !(Number.isInteger(def.status) && def.status >= 400 && def.status <= 599))
      throw new RangeError(`error code ${code}: status ${def.status} is not an HTTP error status`);
  }
  return Object.freeze(definitions);
}

/** The options a registry's code gives its errors (retriable, status), with a cause if any. */
export function registryOptions(def: ErrorDefinition, cause?: unknown): PodmortemErrorOptions {
  const options: PodmortemErrorOptions = { retriable: def.retriable };
  if (def.status !== undefined) options.status = def.status;
  if (cause !== undefined) options.cause = cause;
  return options;
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

/** A bug, not a passing condition: no amount of waiting makes it go away. */
export function isProgrammerError(err: unknown): boolean {
  return (
    err instanceof TypeError ||
    err instanceof RangeError ||
    err instanceof SyntaxError ||
    err instanceof ReferenceError
  );
}

/**
 * Whether trying again can help. Programmer errors never are; our own errors say so; anything
 * else from I/O (network, broker, server) is presumed passing.
 */
export function isRetriable(err: unknown): boolean {
  if (err instanceof PodmortemError) return err.retriable;
  if (isProgrammerError(err)) return false;
  if (err instanceof Error && 'retriable' in err && typeof err.retriable === 'boolean') return err.retriable;
  return true;
}
