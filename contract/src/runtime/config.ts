import { Type, type Static, type TObject, type TSchema } from '@sinclair/typebox';
import { Ajv2020 } from 'ajv/dist/2020.js';
import { shellWord, wrapText } from './cli.ts';
import { ConfigError } from './errors.ts';

// One typed configuration schema per service (TypeBox, every key with a documented default),
// read from environment variables PREFIX_KEY_IN_SNAKE_CASE and validated before anything starts.
// A bad value throws a ConfigError naming the variable, in one line: for a union of literals it
// lists the allowed values, for a URL it does not repeat the value (it may hold a password).

export function envName(prefix: string, key: string): string {
  return prefix + key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase();
}

function schemaType(schema: TSchema): string | undefined {
  return typeof schema.type === 'string' ? schema.type : undefined;
}

/** The values of a union of literals (Type.Union([Type.Literal('a'), …])), else undefined. */
export function literalValues(schema: TSchema): unknown[] | undefined {
  const branches: unknown = schema.anyOf;
  if (!Array.isArray(branches) || branches.length === 0) return undefined;
  const values: unknown[] = [];
  for (const branch of branches as TSchema[]) {
    if (!('const' in branch)) return undefined;
    values.push(branch.const);
  }
  return values;
}

function oneOfMessage(values: unknown[]): string {
  return `must be one of ${values.map(String).join(', ')}`;
}

function coerce(name: string, raw: string, schema: TSchema): unknown {
  const literals = literalValues(schema);
  if (literals !== undefined) {
    const match = literals.find((v) => String(v) === raw);
    if (match === undefined)
      throw new ConfigError(name, `${oneOfMessage(literals)}, got ${JSON.stringify(raw)}`);
    return match;
  }
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
      throw new ConfigError(name, `must be true or false (or 1 or 0), got ${JSON.stringify(raw)}`);
    case 'array':
      return raw
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '');
    default:
      return raw;
  }
}

/** Marks a string setting as an http(s) URL, which loadConfig checks (the schema cannot: `http://` matches any pattern). */
const URL_SETTING = 'podmortemUrl';

/**
 * An http or https URL setting. With an empty default, empty stays allowed and means "none"
 * (as the setting's description says); otherwise the value must be a URL a client can be made of.
 */
export function urlSetting(def: string, description: string) {
  return Type.String({ default: def, description, [URL_SETTING]: true });
}

function isHttpUrl(value: string): boolean {
  if (!URL.canParse(value)) return false;
  const url = new URL(value);
  return (url.protocol === 'http:' || url.protocol === 'https:') && url.hostname !== '';
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
      e?.keyword === 'required'
        ? String((e.params as { missingProperty?: string }).missingProperty)
        : (e?.instancePath.split('/')[1] ?? '');
    const prop = schema.properties[key];
    const literals = prop && literalValues(prop);
    const message =
      e?.keyword === 'required'
        ? 'is required (it has no default)'
        : literals !== undefined
          ? oneOfMessage(literals)
          : (e?.message ?? 'is invalid');
    throw new ConfigError(envName(prefix, key), message);
  }
  for (const [key, prop] of Object.entries(schema.properties)) {
    const url = value[key];
    // The value is not repeated: a URL may carry a user and password.
    if (prop[URL_SETTING] === true && typeof url === 'string' && !(url === '' && prop.default === ''))
      if (!isHttpUrl(url))
        throw new ConfigError(
          envName(prefix, key),
          `must be an http or https URL (http://host:port)${prop.default === '' ? ', or empty' : ''}`,
        );
  }
  return value;
}

/** The setting nearest `name` by edit distance (Levenshtein), the first of equals; undefined if none. */
export function closestName(name: string, names: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of names) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  return best;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++)
      row[j] = Math.min(
        (previous[j] ?? 0) + 1,
        (row[j - 1] ?? 0) + 1,
        (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    previous = row;
  }
  return previous[b.length] ?? 0;
}

export interface UnknownSetting {
  variable: string;
  closest: string | undefined;
}

/**
 * The variables with the service's prefix that its schema does not know (a typo leaves the
 * setting at its default without a word otherwise), each with the known variable nearest it.
 */
export function unknownSettings(
  schema: TObject,
  prefix: string,
  env: Record<string, string | undefined>,
): UnknownSetting[] {
  const known = Object.keys(schema.properties).map((key) => envName(prefix, key));
  return Object.keys(env)
    .filter((name) => name.startsWith(prefix) && !known.includes(name))
    .sort()
    .map((variable) => ({ variable, closest: closestName(variable, known) }));
}

/** Markdown rows `| VARIABLE | default | description |` for a service's README table. */
export function configTable(schema: TObject, prefix: string): string {
  const rows = Object.entries(schema.properties).map(([key, prop]) => {
    const def = prop.default === undefined ? '(required)' : `\`${defaultText(prop)}\``;
    return `| \`${envName(prefix, key)}\` | ${def} | ${prop.description ?? ''} |`;
  });
  return ['| variable | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}

function defaultText(prop: TSchema): string | undefined {
  const def: unknown = prop.default;
  if (def === undefined) return undefined;
  if (Array.isArray(def)) return def.map((d) => (typeof d === 'string' ? d : JSON.stringify(d))).join(',');
  return typeof def === 'string' ? def : JSON.stringify(def);
}

/**
 * The settings as --help prints them, for a terminal: each variable with its default as a shell
 * assignment (`(required)` without one), then its description wrapped below it.
 */
export function settingsText(schema: TObject, prefix: string, width = 80): string {
  const blocks = Object.entries(schema.properties).map(([key, prop]) => {
    const def = defaultText(prop);
    const head = `  ${envName(prefix, key)}${def === undefined ? ' (required)' : `=${shellWord(def)}`}`;
    const literals = literalValues(prop);
    const about = `${prop.description ?? ''}${literals ? ` (one of: ${literals.map(String).join(', ')})` : ''}`;
    return [head, ...wrapText(about, width, '      ')].join('\n');
  });
  return blocks.join('\n');
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
