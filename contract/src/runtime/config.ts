import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { ConfigError } from './errors.ts';

// One typed configuration schema per service (TypeBox, every key with a documented default),
// read from environment variables PREFIX_KEY_IN_SNAKE_CASE and validated before anything starts.
// A bad value throws a ConfigError naming the variable.

export function envName(prefix: string, key: string): string {
  return prefix + key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

function schemaType(schema: TSchema): string | undefined {
  return typeof schema.type === 'string' ? schema.type : undefined;
}

function coerce(name: string, raw: string, schema: TSchema): unknown {
  switch (schemaType(schema)) {
    case 'integer':
    case 'number': {
      const n = Number(raw.trim());
      if (raw.trim() === '' || !Number.isFinite(n))
        throw new ConfigError(name, `must be a number, got ${JSON.stringify(raw)}`);
      return n;
    }
    case 'boolean':
      if (raw === 'true' || raw === '1') return true;
      if (raw === 'false' || raw === '0') return false;
      throw new ConfigError(name, `must be true or false, got ${JSON.stringify(raw)}`);
    case 'array':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    default:
      return raw;
  }
}

const ajv = new Ajv2020({ useDefaults: true, allErrors: false, strict: false });

export function loadConfig<T extends TObject>(
  schema: T,
  prefix: string,
  env: Record<string, string | undefined> = process.env,
  overrides: Partial<Static<T>> = {},
): Static<T> {
  const value: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries(schema.properties)) {
    const name = envName(prefix, key);
    const raw = env[name];
    if (raw !== undefined) value[key] = coerce(name, raw, prop);
  }
  Object.assign(value, overrides);
  const check = ajv.compile<Static<T>>(schema);
  if (!check(value)) {
    const e = check.errors?.[0];
    const key =
      e?.instancePath.split('/')[1] ??
      String((e?.params as { missingProperty?: string } | undefined)?.missingProperty);
    throw new ConfigError(envName(prefix, key), e?.message ?? 'is invalid');
  }
  return value;
}

/** Markdown rows `| VARIABLE | default | description |` for a service's README table. */
export function configTable(schema: TObject, prefix: string): string {
  const rows = Object.entries(schema.properties).map(([key, prop]) => {
    const def =
      prop.default === undefined
        ? '(required)'
        : `\`${Array.isArray(prop.default) ? prop.default.join(',') : String(prop.default)}\``;
    return `| \`${envName(prefix, key)}\` | ${def} | ${prop.description ?? ''} |`;
  });
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

/** A rule over a loaded configuration: a ConfigError naming `key`'s variable when `ok` is false. */
export function configRule(prefix: string) {
  return (ok: boolean, key: string, message: string): void => {
    if (!ok) throw new ConfigError(envName(prefix, key), message);
  };
}

export interface ConsumerGroupTimings {
  heartbeatIntervalMs: number;
  sessionTimeoutMs: number;
  retryInitialMs: number;
  retryMaxMs: number;
}

/**
 * What every consumer-group service's timings must satisfy: heartbeats often enough that a busy
 * member is not taken for a dead one, and a backoff that starts below its ceiling.
 */
export function checkConsumerGroupTimings(config: ConsumerGroupTimings, prefix: string): void {
  const must = configRule(prefix);
  must(
    config.heartbeatIntervalMs * 3 <= config.sessionTimeoutMs,
    'heartbeatIntervalMs',
    `must be at most a third of ${envName(prefix, 'sessionTimeoutMs')} (${config.sessionTimeoutMs})`,
  );
  must(
    config.retryInitialMs <= config.retryMaxMs,
    'retryInitialMs',
    `must not exceed ${envName(prefix, 'retryMaxMs')} (${config.retryMaxMs})`,
  );
}

/** The settings of a service's ops server (/metrics, /healthz, /readyz), spread into its schema. */
export function opsServerSettings(defaultPort: number) {
  return {
    opsHost: Type.String({
      minLength: 1,
      default: '0.0.0.0',
      description: 'Address of /metrics, /healthz, /readyz',
    }),
    opsPort: Type.Integer({
      minimum: 0,
      maximum: 65535,
      default: defaultPort,
      description: 'Port of the ops server (0: any)',
    }),
  };
}
