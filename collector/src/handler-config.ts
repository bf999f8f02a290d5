import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

// The handler's configuration: a JSON file, because the kernel runs the handler with an empty
// environment. The wrapper script passes `--config <its own folder>/podmortem-handler.json`
// (installHandler writes both); without --config the handler reads /etc/podmortem/handler.json.
// A missing file, an unknown key or a bad value never stops a crash from being recorded: the
// handler uses the default for that key and says so in its log.
//
// The schema is checked by hand rather than with TypeBox/ajv: the handler runs once per crash while
// the crashing process waits, and loading those costs ~150 ms of start-up.

export const DEFAULT_HANDLER_CONFIG_PATH = '/etc/podmortem/handler.json';

export interface HandlerConfig {
  spoolDir: string;
  logFile: string;
  nodeName: string;
  maxCoreBytes: number;
  compression: 'zstd' | 'none';
  zstdLevel: number;
  rateLimitDumps: number;
  rateLimitWindowSeconds: number;
  minFreeBytes: number;
  deadlineSeconds: number;
  coreHeadMaxBytes: number;
  moduleCapture: 'copy' | 'off';
  moduleCacheMaxBytes: number;
  moduleMaxBytes: number;
  moduleCopyBytes: number;
  moduleCopyMs: number;
}

interface Key {
  default: string | number;
  description: string;
  check: (v: unknown) => boolean;
}

const isInt =
  (min: number, max = Number.MAX_SAFE_INTEGER) =>
  (v: unknown) =>
    typeof v === 'number' && Number.isInteger(v) && v >= min && v <= max;
const isText = (v: unknown) => typeof v === 'string';

export const HANDLER_CONFIG_KEYS: Record<keyof HandlerConfig, Key> = {
  spoolDir: {
    default: '/var/lib/podmortem/spool',
    description: 'Node-local spool folder the handler writes crashes into and the agent reads (hostPath)',
    check: (v) => typeof v === 'string' && v.startsWith('/'),
  },
  logFile: {
    default: '',
    description: 'JSON-lines log of every crash the handler saw; empty means <spoolDir>/handler.log',
    check: isText,
  },
  nodeName: {
    default: '',
    description: "Node name recorded with each crash; empty means the host's name",
    check: isText,
  },
  maxCoreBytes: {
    default: 2 * 1024 ** 3,
    description: 'Raw core bytes kept per crash; the rest is read and dropped (dump.status=truncated)',
    check: isInt(0),
  },
  compression: {
    default: 'zstd',
    description: 'Compression of the spooled core: zstd or none',
    check: (v) => v === 'zstd' || v === 'none',
  },
  zstdLevel: { default: 3, description: 'zstd level (1 fastest … 19)', check: isInt(1, 19) },
  rateLimitDumps: {
    default: 5,
    description:
      'Dumps kept per container (or per executable outside containers) within the window; 0 keeps none',
    check: isInt(0),
  },
  rateLimitWindowSeconds: { default: 600, description: 'Rate-limit window in seconds', check: isInt(1) },
  minFreeBytes: {
    default: 1024 ** 3,
    description:
      'Spool free-space floor: no dump is started, and a dump stops, below it (dump.status=skipped/truncated)',
    check: isInt(0),
  },
  deadlineSeconds: {
    default: 120,
    description: 'Longest the handler reads the core; then it keeps what it has and lets the kernel go',
    check: isInt(1),
  },
  coreHeadMaxBytes: {
    default: 4 * 1024 ** 2,
    description:
      "Most bytes of a core's headers and notes kept in the meta when its dump is not stored whole (skipped, truncated, failed), so the crash still gets its signal code, fault address, registers and threads; 0 keeps none",
    check: isInt(0),
  },
  moduleCapture: {
    default: 'copy',
    description:
      'copy: record every mapped ELF module of the crashed process (path, build id, ranges, deleted) and copy each build id new to the node into the build-id cache under the spool, for the agent to store; off: neither',
    check: (v) => v === 'copy' || v === 'off',
  },
  moduleCacheMaxBytes: {
    default: 2 * 1024 ** 3,
    description:
      "Bytes of captured modules (executables, libraries) the node's build-id cache under the spool may hold before the agent has stored them; past it a new module is skipped (cache-full), nothing is evicted",
    check: isInt(0),
  },
  moduleMaxBytes: {
    default: 512 * 1024 ** 2,
    description: 'Largest module file copied into the build-id cache; larger ones are skipped (too-large)',
    check: isInt(0),
  },
  moduleCopyBytes: {
    default: 1024 ** 3,
    description: 'Module bytes one crash may copy into the build-id cache; the rest are skipped (budget)',
    check: isInt(0),
  },
  moduleCopyMs: {
    default: 10_000,
    description:
      'Milliseconds one crash may spend on its modules after the core (never past deadlineSeconds); the rest are skipped (budget); 0 lists the modules and copies none',
    check: isInt(0),
  },
};

export function defaultHandlerConfig(): HandlerConfig {
  const c = Object.fromEntries(Object.entries(HANDLER_CONFIG_KEYS).map(([k, v]) => [k, v.default]));
  return c as unknown as HandlerConfig;
}

/** Fills the defaults and checks every key; problems name the key and what was wrong. */
export function resolveHandlerConfig(input: unknown): { config: HandlerConfig; problems: string[] } {
  const config = defaultHandlerConfig();
  const problems: string[] = [];
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    problems.push('the configuration is not a JSON object: defaults used');
    input = {};
  }
  const target = config as unknown as Record<string, unknown>;
  for (const [key, value] of Object.entries(input as Record<string, unknown>)) {
    const spec = (HANDLER_CONFIG_KEYS as Record<string, Key | undefined>)[key];
    if (!spec) {
      problems.push(`unknown configuration key ${key}: ignored`);
      continue;
    }
    if (!spec.check(value)) {
      problems.push(
        `${key}: ${JSON.stringify(value)} is not valid (${spec.description}): default ${JSON.stringify(spec.default)} used`,
      );
      continue;
    }
    target[key] = value;
  }
  if (config.logFile === '') config.logFile = join(config.spoolDir, 'handler.log');
  return { config, problems };
}

export async function loadHandlerConfig(
  path: string,
): Promise<{ config: HandlerConfig; problems: string[] }> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    const { config } = resolveHandlerConfig({});
    return {
      config,
      problems: [`configuration ${path} unreadable (${(err as Error).message}): defaults used`],
    };
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    const { config } = resolveHandlerConfig({});
    return {
      config,
      problems: [`configuration ${path} is not JSON (${(err as Error).message}): defaults used`],
    };
  }
  return resolveHandlerConfig(parsed);
}

/** Markdown rows for the README: | key | default | meaning |. */
export function handlerConfigTable(): string {
  const rows = Object.entries(HANDLER_CONFIG_KEYS).map(
    ([k, v]) => `| \`${k}\` | \`${JSON.stringify(v.default)}\` | ${v.description} |`,
  );
  return ['| key | default | meaning |', '| --- | --- | --- |', ...rows].join('\n');
}
