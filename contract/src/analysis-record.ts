import { Type, type Static } from '@sinclair/typebox';
import {
  analyzerProperties,
  ANALYZER_FIELDS,
  CRASH_ID_PATTERN,
  DnsLabel,
  DnsSubdomain,
  PodUid,
  type CrashEvent,
} from './crash-event.ts';
import { validatorOf, type Validation } from './validate.ts';

// The analysis record, version 1: what the analyzer publishes on the analysis topic for one crash
// (docs/architecture.md §3). It carries only what the indexer needs to merge the analysis into the
// crash's document without reading the crash first: the crash id (the document's `_id`), the
// crash's `@timestamp`, the namespace and pod uid (the query API's tenancy filter, for a document
// the analysis reaches before the crash does, and what tells another crash of the same id apart)
// and what the Kafka key is made of. The crash id's time names the monthly index.

const strict = { additionalProperties: false } as const;

/**
 * What a record about one crash (an analysis, a dump removal) carries of it: enough for the indexer
 * to find or make the crash's document and to key the record like the crash.
 */
export const crashReferenceProperties = {
  schema_version: Type.Literal(1),
  '@timestamp': Type.String({ format: 'date-time', description: "The crash's" }),
  crash: Type.Object({ id: Type.String({ pattern: CRASH_ID_PATTERN }) }, strict),
  kubernetes: Type.Optional(
    Type.Object(
      {
        namespace: DnsLabel('Namespace of the pod (DNS-1123 label)'),
        pod: Type.Object({ uid: PodUid() }, strict),
      },
      strict,
    ),
  ),
  collector: Type.Object({ node: DnsSubdomain('Node the collector runs on (DNS-1123 subdomain)') }, strict),
};

const { status, analyzed_at, analyzer, ...optional } = analyzerProperties;

/** The analyzer's part of `analysis`; status, time and version are always known. */
export const AnalysisResultSchema = Type.Object(
  {
    ...optional,
    status: Type.Optional(status, false),
    analyzed_at: Type.Optional(analyzed_at, false),
    analyzer: Type.Optional(analyzer, false),
  },
  strict,
);

export type AnalysisResult = Static<typeof AnalysisResultSchema>;

export const AnalysisRecordSchema = Type.Object(
  {
    ...crashReferenceProperties,
    analysis: AnalysisResultSchema,
  },
  {
    ...strict,
    $id: 'https://podmortem.io/schemas/analysis-record/v1',
    title: 'podmortem analysis record v1',
  },
);

export type AnalysisRecord = Static<typeof AnalysisRecordSchema>;

/** Validates an untrusted value as an analysis record v1. */
export const validateAnalysisRecord: (value: unknown) => Validation<AnalysisRecord> =
  validatorOf<AnalysisRecord>(AnalysisRecordSchema, 'analysis record v1');

/**
 * The record of a crash's analysis. Only the analyzer's fields are taken from `analysis`, so an
 * object that also holds the collector's (`modules`, `build_id`) cannot carry them along.
 */
export function analysisRecordOf(event: CrashEvent, analysis: AnalysisResult): AnalysisRecord {
  const k8s = event.kubernetes;
  const picked = Object.fromEntries(
    ANALYZER_FIELDS.filter((f) => analysis[f] !== undefined).map((f) => [f, analysis[f]]),
  ) as AnalysisResult;
  return {
    schema_version: 1,
    '@timestamp': event['@timestamp'],
    crash: { id: event.crash.id },
    ...(k8s ? { kubernetes: { namespace: k8s.namespace, pod: { uid: k8s.pod.uid } } } : {}),
    collector: { node: event.collector.node },
    analysis: picked,
  };
}
