import { STATUS_CODES } from 'node:http';
import { defineErrors, PodmortemError, type ErrorDefinition } from '@podmortem/contract/runtime';

// The query API's error registry, in the manner of fastify's FST_ERR_*: every code with its HTTP
// status and message, so a caller (and the OpenAPI document) sees one shape for every failure:
// { statusCode, code, error, message }, the message naming the parameter or resource at fault.

export const API_ERRORS = defineErrors({
  PM_ERR_VALIDATION: { status: 400, retriable: false, message: 'the request is invalid' },
  PM_ERR_BAD_PARAMETER: { status: 400, retriable: false, message: 'a parameter has a value the API refuses' },
  PM_ERR_BAD_CURSOR: { status: 400, retriable: false, message: 'the cursor is not one this API returned' },
  PM_ERR_UNAUTHENTICATED: { status: 401, retriable: false, message: 'no valid bearer token' },
  PM_ERR_FORBIDDEN: { status: 403, retriable: false, message: 'the caller may not do this' },
  PM_ERR_CRASH_NOT_FOUND: { status: 404, retriable: false, message: 'no such crash' },
  PM_ERR_NO_DUMP: { status: 404, retriable: false, message: 'the crash has no stored dump' },
  PM_ERR_DUMP_GONE: { status: 410, retriable: false, message: 'the dump was removed by retention' },
  PM_ERR_DUMP_REMOVED: {
    status: 410,
    retriable: false,
    message: 'the dump was deleted by a user or expired by retention',
  },
  PM_ERR_DUMP_UNREADABLE: { status: 404, retriable: false, message: 'the dump cannot be served' },
  PM_ERR_POD_NOT_FOUND: { status: 404, retriable: false, message: 'no crashes of that pod' },
  PM_ERR_GROUP_NOT_FOUND: { status: 404, retriable: false, message: 'no crashes with that signature' },
  PM_ERR_MODULE_NOT_FOUND: { status: 404, retriable: false, message: 'no such module stored' },
  PM_ERR_CRASH_INVALID: {
    status: 422,
    retriable: false,
    message: 'the stored crash is not a valid crash event',
  },
  PM_ERR_ROUTE_NOT_FOUND: { status: 404, retriable: false, message: 'no such route' },
  PM_ERR_METHOD_NOT_ALLOWED: {
    status: 405,
    retriable: false,
    message: 'the route does not take that method',
  },
  PM_ERR_RANGE_NOT_SATISFIABLE: { status: 416, retriable: false, message: 'the range is outside the dump' },
  PM_ERR_RATE_LIMITED: { status: 429, retriable: false, message: 'too many requests' },
  PM_ERR_AUTH_UNAVAILABLE: { status: 503, retriable: true, message: 'the caller could not be checked' },
  PM_ERR_BACKEND_UNAVAILABLE: { status: 503, retriable: true, message: 'a backend is unavailable' },
  PM_ERR_INTERNAL: { status: 500, retriable: false, message: 'internal error' },
  // Never answered as such: the routes turn these into one of the codes above.
  PM_ERR_KUBE_UNAVAILABLE: { retriable: true, message: 'the Kubernetes API did not answer' },
  PM_ERR_STORAGE_MISSING: { retriable: false, message: 'no such file under the storage root' },
  PM_ERR_STORAGE_UNSAFE: { retriable: false, message: 'the path may not be read from the storage root' },
});

export type ApiErrorCode = keyof typeof API_ERRORS;

export class ApiError extends PodmortemError {
  declare readonly status: number;
  /** Response headers the error needs (Content-Range on 416, Retry-After on 429/503). */
  readonly headers: Record<string, string>;
  /** What only the log is told (a backend's own error names internal addresses). */
  readonly detail: string | undefined;

  constructor(
    code: string,
    message: string,
    statusCode: number,
    options: {
      retriable?: boolean;
      cause?: unknown;
      headers?: Record<string, string>;
      detail?: string | undefined;
    } = {},
  ) {
    super(code, message, { status: statusCode, retriable: options.retriable ?? false, cause: options.cause });
    this.name = 'ApiError';
    this.headers = { ...options.headers };
    this.detail = options.detail;
  }

  /** The status under the name fastify reads. */
  get statusCode(): number {
    return this.status;
  }
}

export interface ErrorCode<A extends unknown[]> {
  (...args: A): ApiError;
  readonly code: string;
  readonly statusCode: number;
}

/** The factory of one code's errors: its message from the arguments, the rest from the registry. */
function define<A extends unknown[]>(
  code: ApiErrorCode,
  message: (...args: A) => string,
  headers: (...args: A) => Record<string, string> = () => ({}),
  detail?: (...args: A) => string,
): ErrorCode<A> {
  const { status, retriable }: ErrorDefinition = API_ERRORS[code];
  if (status === undefined) throw new RangeError(`${code} is not an HTTP error`);
  const make = (...args: A) =>
    new ApiError(code, message(...args), status, {
      retriable,
      headers: headers(...args),
      detail: detail?.(...args),
    });
  return Object.assign(make, { code, statusCode: status });
}

export const PM_ERR_VALIDATION = define('PM_ERR_VALIDATION', (detail: string) => detail);
export const PM_ERR_BAD_PARAMETER = define(
  'PM_ERR_BAD_PARAMETER',
  (param: string, why: string) => `${param} ${why}`,
);
export const PM_ERR_BAD_CURSOR = define(
  'PM_ERR_BAD_CURSOR',
  () => 'querystring/cursor is not a cursor this API returned (copy next_cursor unchanged)',
);
// A 401 names the scheme to use (RFC 9110 §11.6.1).
export const PM_ERR_UNAUTHENTICATED = define(
  'PM_ERR_UNAUTHENTICATED',
  (why: string) => why,
  () => ({ 'www-authenticate': 'Bearer realm="podmortem"' }),
);
export const PM_ERR_FORBIDDEN = define('PM_ERR_FORBIDDEN', (why: string) => why);
export const PM_ERR_CRASH_NOT_FOUND = define(
  'PM_ERR_CRASH_NOT_FOUND',
  (id: string) => `crash ${id} not found`,
);
export const PM_ERR_NO_DUMP = define(
  'PM_ERR_NO_DUMP',
  (id: string, status: string, reason?: string) =>
    `crash ${id} has no stored dump (dump.status ${status}${reason ? `: ${reason}` : ''})`,
);
export const PM_ERR_DUMP_GONE = define(
  'PM_ERR_DUMP_GONE',
  (id: string) => `the dump of crash ${id} has been removed from storage (retention)`,
);
/** The crash says its dump was taken away (dump.status expired or deleted): when, by whom, why. */
export const PM_ERR_DUMP_REMOVED = define(
  'PM_ERR_DUMP_REMOVED',
  (id: string, dump: { status: string; reason?: string; removed_at?: string; removed_by?: string }) => {
    const at = dump.removed_at ? ` at ${dump.removed_at}` : '';
    const why = dump.reason ? `: ${dump.reason}` : '';
    return dump.status === 'deleted'
      ? `the dump of crash ${id} was deleted by ${dump.removed_by ?? 'a user'}${at}${why}`
      : `the dump of crash ${id} expired${at}${why}`;
  },
);
export const PM_ERR_DUMP_UNREADABLE = define(
  'PM_ERR_DUMP_UNREADABLE',
  (id: string) => `the dump of crash ${id} cannot be served from the storage root`,
);
export const PM_ERR_POD_NOT_FOUND = define(
  'PM_ERR_POD_NOT_FOUND',
  (ns: string, pod: string) => `no crashes of pod ${ns}/${pod} found`,
);
export const PM_ERR_GROUP_NOT_FOUND = define(
  'PM_ERR_GROUP_NOT_FOUND',
  (signature: string) => `no crashes with signature ${signature} found`,
);
// The same message whether no crash the caller may read maps the module or the file is not
// stored: which build ids exist is not told.
export const PM_ERR_MODULE_NOT_FOUND = define(
  'PM_ERR_MODULE_NOT_FOUND',
  (buildId: string, kind: string) => `no ${kind} of build id ${buildId} found`,
);
export const PM_ERR_CRASH_INVALID = define(
  'PM_ERR_CRASH_INVALID',
  (id: string, errors: string[]) =>
    `crash ${id} is not a valid crash event to analyse again: ${errors.join('; ')}`,
);
export const PM_ERR_ROUTE_NOT_FOUND = define(
  'PM_ERR_ROUTE_NOT_FOUND',
  (method: string, url: string) => `no route ${method} ${url}`,
);
export const PM_ERR_METHOD_NOT_ALLOWED = define(
  'PM_ERR_METHOD_NOT_ALLOWED',
  (method: string, url: string, allowed: string[]) =>
    `${url} does not take ${method} (allowed: ${allowed.join(', ')})`,
);
export const PM_ERR_RANGE_NOT_SATISFIABLE = define(
  'PM_ERR_RANGE_NOT_SATISFIABLE',
  (range: string, size: number) => `headers/range ${range} is outside the ${size} bytes of the dump`,
  (_range, size) => ({ 'content-range': `bytes */${size}` }),
);
export const PM_ERR_RATE_LIMITED = define(
  'PM_ERR_RATE_LIMITED',
  (seconds: number, why: string) => `rate limit exceeded, retry in ${seconds} s: ${why}`,
  (seconds) => ({ 'retry-after': String(seconds) }),
);
export const PM_ERR_AUTH_UNAVAILABLE = define(
  'PM_ERR_AUTH_UNAVAILABLE',
  (review: string) => `the Kubernetes API did not answer the ${review} that checks the caller; retry later`,
);
// The backend is named, its own error only logged: it carries the address the API reaches it at.
export const PM_ERR_BACKEND_UNAVAILABLE = define<[what: string, why: string]>(
  'PM_ERR_BACKEND_UNAVAILABLE',
  (what) => `${what} is unavailable; retry later`,
  undefined,
  (_what, why) => why,
);
export const PM_ERR_INTERNAL = define('PM_ERR_INTERNAL', () => 'internal error (logged)');

/** Every code an HTTP caller can get, with its status. */
export const errorCodes: readonly { code: string; statusCode: number }[] = Object.entries(API_ERRORS).flatMap(
  ([code, def]: [string, ErrorDefinition]) =>
    def.status === undefined ? [] : [{ code, statusCode: def.status }],
);

export interface ErrorBody {
  statusCode: number;
  code: string;
  error: string;
  message: string;
}

export function errorBody(statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message };
}
