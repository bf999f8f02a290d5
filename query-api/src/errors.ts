import { STATUS_CODES } from 'node:http';
import { PodmortemError } from '@podmortem/contract/runtime';

// The query API's error registry, in the manner of fastify's FST_ERR_*: every code with its HTTP
// status and message, so a caller (and the OpenAPI document) sees one shape for every failure:
// { statusCode, code, error, message }, the message naming the parameter or resource at fault.

export class ApiError extends PodmortemError {
  readonly statusCode: number;
  /** Response headers the error needs (Content-Range on 416, Retry-After on 429/503). */
  readonly headers: Record<string, string>;

  constructor(
    code: string,
    message: string,
    statusCode: number,
    options: { retriable?: boolean; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(code, message, { status: statusCode, retriable: options.retriable ?? false, cause: options.cause });
    this.name = 'ApiError';
    this.statusCode = statusCode;
    this.headers = options.headers ?? {};
  }
}

export interface ErrorCode<A extends unknown[]> {
  (...args: A): ApiError;
  readonly code: string;
  readonly statusCode: number;
}

function define<A extends unknown[]>(
  code: string,
  statusCode: number,
  message: (...args: A) => string,
  retriable = false,
  headers: Record<string, string> = {},
): ErrorCode<A> {
  const make = (...args: A) => new ApiError(code, message(...args), statusCode, { retriable, headers });
  return Object.assign(make, { code, statusCode });
}

export const PM_ERR_VALIDATION = define('PM_ERR_VALIDATION', 400, (detail: string) => detail);
export const PM_ERR_BAD_PARAMETER = define(
  'PM_ERR_BAD_PARAMETER',
  400,
  (param: string, why: string) => `${param} ${why}`,
);
export const PM_ERR_BAD_CURSOR = define(
  'PM_ERR_BAD_CURSOR',
  400,
  () => 'querystring/cursor is not a cursor this API returned (copy next_cursor unchanged)',
);
// A 401 names the scheme to use (RFC 9110 §11.6.1).
export const PM_ERR_UNAUTHENTICATED = define('PM_ERR_UNAUTHENTICATED', 401, (why: string) => why, false, {
  'www-authenticate': 'Bearer realm="podmortem"',
});
export const PM_ERR_FORBIDDEN = define('PM_ERR_FORBIDDEN', 403, (why: string) => why);
export const PM_ERR_CRASH_NOT_FOUND = define(
  'PM_ERR_CRASH_NOT_FOUND',
  404,
  (id: string) => `crash ${id} not found`,
);
export const PM_ERR_NO_DUMP = define(
  'PM_ERR_NO_DUMP',
  404,
  (id: string, status: string, reason?: string) =>
    `crash ${id} has no stored dump (dump.status ${status}${reason ? `: ${reason}` : ''})`,
);
export const PM_ERR_DUMP_GONE = define(
  'PM_ERR_DUMP_GONE',
  410,
  (id: string) => `the dump of crash ${id} has been removed from storage (retention)`,
);
export const PM_ERR_DUMP_UNREADABLE = define(
  'PM_ERR_DUMP_UNREADABLE',
  404,
  (id: string) => `the dump of crash ${id} cannot be served from the storage root`,
);
export const PM_ERR_POD_NOT_FOUND = define(
  'PM_ERR_POD_NOT_FOUND',
  404,
  (ns: string, pod: string) => `no crashes of pod ${ns}/${pod} found`,
);
export const PM_ERR_ROUTE_NOT_FOUND = define(
  'PM_ERR_ROUTE_NOT_FOUND',
  404,
  (method: string, url: string) => `no route ${method} ${url}`,
);
export const PM_ERR_RANGE_NOT_SATISFIABLE = define(
  'PM_ERR_RANGE_NOT_SATISFIABLE',
  416,
  (range: string, size: number) => `headers/range ${range} is outside the ${size} bytes of the dump`,
);
export const PM_ERR_RATE_LIMITED = define(
  'PM_ERR_RATE_LIMITED',
  429,
  (after: string) => `rate limit exceeded, retry in ${after}`,
);
export const PM_ERR_AUTH_UNAVAILABLE = define(
  'PM_ERR_AUTH_UNAVAILABLE',
  503,
  (why: string) => `the Kubernetes API could not check the caller: ${why}`,
  true,
);
export const PM_ERR_BACKEND_UNAVAILABLE = define(
  'PM_ERR_BACKEND_UNAVAILABLE',
  503,
  (what: string, why: string) => `${what} is unavailable: ${why}`,
  true,
);
export const PM_ERR_INTERNAL = define('PM_ERR_INTERNAL', 500, () => 'internal error (logged)');

export const errorCodes: readonly { code: string; statusCode: number }[] = [
  PM_ERR_VALIDATION,
  PM_ERR_BAD_PARAMETER,
  PM_ERR_BAD_CURSOR,
  PM_ERR_UNAUTHENTICATED,
  PM_ERR_FORBIDDEN,
  PM_ERR_CRASH_NOT_FOUND,
  PM_ERR_NO_DUMP,
  PM_ERR_DUMP_GONE,
  PM_ERR_DUMP_UNREADABLE,
  PM_ERR_POD_NOT_FOUND,
  PM_ERR_ROUTE_NOT_FOUND,
  PM_ERR_RANGE_NOT_SATISFIABLE,
  PM_ERR_RATE_LIMITED,
  PM_ERR_AUTH_UNAVAILABLE,
  PM_ERR_BACKEND_UNAVAILABLE,
  PM_ERR_INTERNAL,
];

export interface ErrorBody {
  statusCode: number;
  code: string;
  error: string;
  message: string;
}

export function errorBody(statusCode: number, code: string, message: string): ErrorBody {
  return { statusCode, code, error: STATUS_CODES[statusCode] ?? 'Error', message };
}
