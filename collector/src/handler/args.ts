import { CORE_PATTERN_FIELDS } from '../core-pattern.ts';
import type { KernelFacts } from '../spool-entry.ts';

// Parses the handler's command line (core-pattern.ts says how the kernel builds it).

export interface HandlerArgs {
  /** --config <file>, placed by the wrapper script (the kernel passes no environment). */
  configPath?: string;
  /** Every fact; a missing or malformed one holds 0 or '' and is named in `errors`. */
  kernel: KernelFacts;
  errors: string[];
  /** The kernel's arguments as received (without --config). */
  raw: string[];
}

/** RLIMIT_CORE = RLIM_INFINITY (2^64-1) is recorded as -1. */
export const UNLIMITED = -1;
const RLIM_INFINITY = (1n << 64n) - 1n;
const MAX_INT = 2 ** 31 - 1;

export function parseHandlerArgs(argv: string[]): HandlerArgs {
  let args = argv;
  let configPath: string | undefined;
  const errors: string[] = [];
  if (args[0] === '--config') {
    configPath = args[1];
    if (configPath === undefined || configPath === '') errors.push('--config has no file');
    args = args.slice(2);
  }
  const kernel: KernelFacts = {
    pid: 0,
    nsPid: 0,
    tid: 0,
    nsTid: 0,
    signal: 0,
    time: 0,
    coreLimit: 0,
    comm: '',
    exePath: '',
    hostname: '',
    uid: 0,
    gid: 0,
  };
  const facts = kernel as unknown as Record<keyof KernelFacts, number | string>;
  CORE_PATTERN_FIELDS.forEach(({ key, spec, kind }, i) => {
    const raw = args[i];
    if (raw === undefined) {
      errors.push(`${spec} (${key}) is missing`);
      return;
    }
    if (kind === 'text') {
      facts[key] = raw;
      return;
    }
    if (kind === 'path') {
      facts[key] = raw.replaceAll('!', '/');
      return;
    }
    if (!/^\d+$/.test(raw)) {
      errors.push(`${spec} (${key}) is not a number: ${JSON.stringify(raw.slice(0, 64))}`);
      return;
    }
    const n = BigInt(raw);
    if (kind === 'limit') {
      facts[key] =
        n === RLIM_INFINITY
          ? UNLIMITED
          : n > BigInt(Number.MAX_SAFE_INTEGER)
            ? Number.MAX_SAFE_INTEGER
            : Number(n);
      return;
    }
    const max = key === 'time' ? Number.MAX_SAFE_INTEGER : kind === 'pid' ? MAX_INT : 2 ** 32 - 1;
    if (n > BigInt(max) || (kind === 'pid' && n === 0n)) {
      errors.push(`${spec} (${key}) is out of range: ${raw}`);
      return;
    }
    facts[key] = Number(n);
  });
  if (args.length > CORE_PATTERN_FIELDS.length)
    errors.push(
      `${args.length - CORE_PATTERN_FIELDS.length} unexpected extra argument(s) (is core_pattern from another version?)`,
    );
  return configPath === undefined ? { kernel, errors, raw: args } : { configPath, kernel, errors, raw: args };
}

/**
 * What a person asks of the handler (`podmortem-handler --help`; the wrapper puts --config first):
 * one flag alone, which the kernel, passing every core_pattern field, never sends.
 */
export function askedOfHandler(argv: readonly string[]): 'help' | 'version' | undefined {
  const rest = argv[0] === '--config' ? argv.slice(2) : argv;
  if (rest.length !== 1) return undefined;
  if (rest[0] === '--help' || rest[0] === '-h') return 'help';
  return rest[0] === '--version' ? 'version' : undefined;
}
