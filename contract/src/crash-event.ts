import { Type, type Static, type TUnsafe } from '@sinclair/typebox';
import { CRASH_ID_PATTERN } from './crash-id.ts';
import {
  DNS_LABEL_MAX,
  DNS_LABEL_PATTERN,
  DNS_SUBDOMAIN_MAX,
  DNS_SUBDOMAIN_PATTERN,
} from './kubernetes-names.ts';

// The crash event, version 1 (docs/architecture.md §3). This TypeBox definition is the one source of truth:
// the TypeScript type is derived from it and crash-event.schema.json is generated from it.

function StringEnum<const T extends readonly string[]>(values: T, description: string): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ type: 'string', enum: [...values], description });
}

const strict = { additionalProperties: false } as const;
const Name = (description: string, maxLength = 253) => Type.String({ minLength: 1, maxLength, description });
const Count = (description: string) => Type.Integer({ minimum: 0, description });
// Names Kubernetes gives (kubernetes-names.ts): they are storage path segments, keys and tenants.
export const DnsLabel = (description: string) =>
  Type.String({ minLength: 1, maxLength: DNS_LABEL_MAX, pattern: DNS_LABEL_PATTERN, description });
export const DnsSubdomain = (description: string) =>
  Type.String({ minLength: 1, maxLength: DNS_SUBDOMAIN_MAX, pattern: DNS_SUBDOMAIN_PATTERN, description });
/** A pod's uid as Kubernetes writes it: a canonical lower-case UUID (a storage path segment). */
export const PodUid = () =>
  Type.String({
    format: 'uuid',
    pattern: '^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$',
    description: 'Pod uid (lower-case UUID)',
  });

export const DUMP_STATUSES = [
  'stored',
  'pending',
  'skipped',
  'truncated',
  'failed',
  'expired',
  'deleted',
] as const;
export type DumpStatus = (typeof DUMP_STATUSES)[number];
/** A stored core taken away afterwards: by retention ('expired') or by a user ('deleted'). */
export const REMOVED_DUMP_STATUSES = ['expired', 'deleted'] as const;
export type RemovedDumpStatus = (typeof REMOVED_DUMP_STATUSES)[number];

export function isRemovedDumpStatus(status: string): status is RemovedDumpStatus {
  return (REMOVED_DUMP_STATUSES as readonly string[]).includes(status);
}

export const CONTAINER_RUNTIMES = ['containerd', 'cri-o', 'docker', 'unknown'] as const;

export { CRASH_ID_PATTERN };

export const Frame = Type.Object(
  {
    module: Type.Optional(Type.String({ maxLength: 4096 })),
    function: Type.Optional(Type.String({ maxLength: 4096 })),
    offset: Type.Optional(Count('Offset of the instruction within the module')),
    build_id: Type.Optional(Type.String({ pattern: '^[0-9a-f]{2,128}$' })),
    file: Type.Optional(Type.String({ minLength: 1, maxLength: 4096, description: 'Source file (DWARF)' })),
    line: Type.Optional(Count('Source line (DWARF)')),
    column: Type.Optional(Count('Source column (DWARF)')),
  },
  strict,
);

export const MODULE_SKIP_REASONS = [
  'budget',
  'too-large',
  'unreadable',
  'no-build-id',
  'cache-full',
  'cache-error',
  'not-captured',
  'store-full',
] as const;

export const MappedModule = Type.Object(
  {
    path: Type.String({
      minLength: 1,
      maxLength: 4096,
      description: "As the process saw it, without ' (deleted)'",
    }),
    build_id: Type.Optional(Type.String({ pattern: '^[0-9a-f]{2,128}$' })),
    deleted: Type.Optional(Type.Boolean({ description: 'The file had been unlinked before the crash' })),
    start: Type.Optional(
      Type.String({ pattern: '^0x[0-9a-f]{1,16}$', description: 'Lowest mapped address' }),
    ),
    end: Type.Optional(
      Type.String({ pattern: '^0x[0-9a-f]{1,16}$', description: 'End of the highest mapping' }),
    ),
    captured: Type.Optional(
      Type.Boolean({ description: 'The file is in the store at _buildid/<build_id>/executable' }),
    ),
    skipped: Type.Optional(StringEnum(MODULE_SKIP_REASONS, 'Why the file was not captured')),
    skip_reason: Type.Optional(Type.String({ maxLength: 1024 })),
  },
  strict,
);

export const ANALYSIS_STATUSES = ['ok', 'partial', 'failed', 'skipped'] as const;
export type AnalysisStatus = (typeof ANALYSIS_STATUSES)[number];

/** Caps of `analysis.threads`, and of `analysis.frames` and each thread's frames. */
export const MAX_ANALYSIS_THREADS = 1024;
export const MAX_ANALYSIS_FRAMES = 256;

export const AnalysisThread = Type.Object(
  {
    tid: Type.Integer({ minimum: 1 }),
    name: Type.Optional(Type.String({ maxLength: 64, description: 'comm of the thread' })),
    crashing: Type.Boolean({ description: 'The thread that got the signal' }),
    frames: Type.Array(Frame, { maxItems: MAX_ANALYSIS_FRAMES, description: 'Innermost first' }),
    truncated: Type.Optional(Type.Boolean({ description: 'Deeper frames were cut at the frame cap' })),
    error: Type.Optional(Type.String({ maxLength: 1024, description: 'Why the unwind stopped early' })),
  },
  strict,
);

/**
 * The fields of `analysis` the analyzer owns and publishes in its analysis record
 * (analysis-record.ts); `modules` and `build_id` are the collector's. The indexer replaces exactly
 * these when a newer analysis arrives, so neither owner overwrites the other's fields.
 */
export const analyzerProperties = {
  status: Type.Optional(StringEnum(ANALYSIS_STATUSES, 'How far the analysis got')),
  reason: Type.Optional(
    Type.String({ maxLength: 1024, description: 'Why it is partial, failed or skipped' }),
  ),
  threads: Type.Optional(Type.Array(AnalysisThread, { maxItems: MAX_ANALYSIS_THREADS })),
  frames: Type.Optional(
    Type.Array(Frame, { maxItems: MAX_ANALYSIS_FRAMES, description: 'Of the crashing thread' }),
  ),
  signature: Type.Optional(Type.String({ maxLength: 1024 })),
  title: Type.Optional(Type.String({ maxLength: 1024 })),
  analyzed_at: Type.Optional(
    Type.String({ format: 'date-time', description: 'When the analysis was made: the newest one wins' }),
  ),
  analyzer: Type.Optional(Name('Analyzer version', 64)),
};

export type AnalyzerField = keyof typeof analyzerProperties;
export const ANALYZER_FIELDS = Object.keys(analyzerProperties) as AnalyzerField[];

export const CrashEventSchema = Type.Object(
  {
    schema_version: Type.Literal(1),
    '@timestamp': Type.String({ format: 'date-time', description: 'When the kernel reported the crash' }),
    crash: Type.Object(
      { id: Type.String({ pattern: CRASH_ID_PATTERN, description: 'UUIDv7 made by the handler' }) },
      strict,
    ),
    kubernetes: Type.Optional(
      Type.Object(
        {
          namespace: DnsLabel('Namespace of the pod (DNS-1123 label)'),
          pod: Type.Object({ name: DnsSubdomain('Pod name (DNS-1123 subdomain)'), uid: PodUid() }, strict),
          container: Type.Object({ name: DnsLabel('Container name (DNS-1123 label)') }, strict),
          node: Type.Object({ name: DnsSubdomain('Node name (DNS-1123 subdomain)') }, strict),
          labels: Type.Optional(Type.Record(Type.String(), Type.String({ maxLength: 63 }))),
          owner: Type.Optional(Type.Object({ kind: Name('Owner kind'), name: Name('Owner name') }, strict)),
        },
        { ...strict, description: 'Absent when the process ran outside any pod' },
      ),
    ),
    container: Type.Optional(
      Type.Object(
        {
          id: Type.String({ pattern: '^[0-9a-f]{12,64}$' }),
          runtime: StringEnum(CONTAINER_RUNTIMES, 'Container runtime named by the cgroup path'),
          image: Type.Optional(
            Type.Object(
              {
                name: Type.Optional(Name('Image reference', 1024)),
                digest: Type.Optional(Type.String({ pattern: '^[a-z0-9]+:[0-9a-f]{32,}$' })),
              },
              strict,
            ),
          ),
        },
        strict,
      ),
    ),
    process: Type.Object(
      {
        pid: Type.Integer({ minimum: 1, description: 'PID in the host namespace' }),
        ns_pid: Type.Optional(Type.Integer({ minimum: 1 })),
        tid: Type.Optional(Type.Integer({ minimum: 1 })),
        executable: Type.Optional(Type.String({ maxLength: 4096 })),
        executable_deleted: Type.Optional(
          Type.Boolean({ description: 'The executable had been unlinked before the crash' }),
        ),
        name: Type.String({ maxLength: 64, description: 'comm' }),
        args: Type.Optional(Type.Array(Type.String({ maxLength: 4096 }), { maxItems: 256 })),
        uid: Type.Optional(Count('uid')),
        gid: Type.Optional(Count('gid')),
      },
      strict,
    ),
    signal: Type.Object(
      {
        number: Type.Integer({ minimum: 0, maximum: 128 }),
        name: Type.String({ pattern: '^(SIG[A-Z0-9+]+|UNKNOWN)$' }),
        code: Type.Optional(Type.Integer()),
      },
      strict,
    ),
    fault: Type.Optional(Type.Object({ address: Type.String({ pattern: '^0x[0-9a-f]{1,16}$' }) }, strict)),
    registers: Type.Optional(
      Type.Object(
        {
          pc: Type.String({ pattern: '^0x[0-9a-f]{1,16}$', description: 'Instruction pointer' }),
          sp: Type.String({ pattern: '^0x[0-9a-f]{1,16}$', description: 'Stack pointer' }),
        },
        { ...strict, description: "The crashing thread's, from the core's notes (x86_64)" },
      ),
    ),
    dump: Type.Object(
      {
        status: StringEnum(DUMP_STATUSES, 'What became of the core'),
        reason: Type.Optional(Type.String({ maxLength: 1024 })),
        path: Type.Optional(
          Type.String({ minLength: 1, maxLength: 1024, description: 'Relative to the storage root' }),
        ),
        size_bytes: Type.Optional(Count('Raw size of the core as the kernel wrote it')),
        stored_bytes: Type.Optional(Count('Size on the storage root')),
        compression: Type.Optional(StringEnum(['zstd', 'none'] as const, 'Compression of the stored core')),
        sha256: Type.Optional(Type.String({ pattern: '^[0-9a-f]{64}$', description: 'Of the raw core' })),
        limit_bytes: Type.Optional(Count('Size limit in force')),
        removed_at: Type.Optional(
          Type.String({ format: 'date-time', description: 'When the core was expired or deleted' }),
        ),
        removed_by: Type.Optional(
          Name("Who removed the core: the user's Kubernetes username, or 'retention'", 512),
        ),
      },
      strict,
    ),
    analysis: Type.Optional(
      Type.Object(
        {
          ...analyzerProperties,
          modules: Type.Optional(Type.Array(MappedModule, { maxItems: 4096 })),
          build_id: Type.Optional(Type.String({ pattern: '^[0-9a-f]{2,128}$' })),
        },
        strict,
      ),
    ),
    collector: Type.Object(
      {
        version: Name('Collector version', 64),
        node: DnsSubdomain('Node the collector runs on (DNS-1123 subdomain)'),
        handler_ms: Type.Optional(Type.Number({ minimum: 0 })),
      },
      strict,
    ),
  },
  { ...strict, $id: 'https://podmortem.io/schemas/crash-event/v1', title: 'podmortem crash event v1' },
);

export type CrashEvent = Static<typeof CrashEventSchema>;
