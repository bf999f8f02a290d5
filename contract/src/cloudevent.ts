import {
  analysisRecordOf,
  validateAnalysisRecord,
  type AnalysisRecord,
  type AnalysisResult,
} from './analysis-record.ts';
import type { CrashEvent } from './crash-event.ts';
import { validateDumpRemoval, type DumpRemoval } from './dump-removal.ts';
import { validateCrashEvent } from './validate.ts';

export const CRASH_EVENT_TYPE = 'io.podmortem.crash.v1';
export const CRASH_DATASCHEMA = 'https://podmortem.io/schemas/crash-event/v1';

/** A CloudEvents 1.0 structured-mode JSON envelope carrying one crash event. */
export interface CrashCloudEvent {
  specversion: '1.0';
  type: typeof CRASH_EVENT_TYPE;
  source: string;
  id: string;
  time: string;
  subject: string;
  datacontenttype: 'application/json';
  dataschema: typeof CRASH_DATASCHEMA;
  data: CrashEvent;
}

export function toCloudEvent(event: CrashEvent): CrashCloudEvent {
  const k8s = event.kubernetes;
  return {
    specversion: '1.0',
    type: CRASH_EVENT_TYPE,
    source: `/nodes/${event.collector.node}`,
    id: event.crash.id,
    time: event['@timestamp'],
    subject: k8s ? `${k8s.namespace}/${k8s.pod.name}/${k8s.container.name}` : `_host/${event.collector.node}`,
    datacontenttype: 'application/json',
    dataschema: CRASH_DATASCHEMA,
    data: event,
  };
}

export function encodeCrashMessage(event: CrashEvent): Buffer {
  return Buffer.from(JSON.stringify(toCloudEvent(event)));
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Why a record is not a message of ours: no JSON object at all, or one that is not valid. */
export type MessageProblem = 'not-json' | 'invalid';
export type CrashMessageProblem = MessageProblem;

export type MessageDecoding<T> =
  { ok: true; value: T } | { ok: false; problem: MessageProblem; errors: string[] };
export type CrashMessageDecoding = MessageDecoding<CrashEvent>;
export type AnalysisMessageDecoding = MessageDecoding<AnalysisRecord>;

const notJson = (error: string): { ok: false; problem: 'not-json'; errors: string[] } => ({
  ok: false,
  problem: 'not-json',
  errors: [`(record): ${error}`],
});
const invalid = (errors: string[]): { ok: false; problem: 'invalid'; errors: string[] } => ({
  ok: false,
  problem: 'invalid',
  errors,
});

/** A record value as a CloudEvents 1.0 envelope of `type`, whose data is still to be validated. */
function envelopeOf(
  value: Buffer | null,
  type: string,
): { ok: true; envelope: Record<string, unknown> } | Extract<MessageDecoding<never>, { ok: false }> {
  if (value === null || value.length === 0) return notJson('value is empty');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (err) {
    return notJson(`not JSON: ${(err as Error).message}`);
  }
  if (!isRecord(parsed)) return notJson('must be a JSON object');
  if (parsed.specversion !== '1.0') return invalid(['specversion: must be "1.0"']);
  if (parsed.type !== type) return invalid([`type: must be "${type}"`]);
  return { ok: true, envelope: parsed };
}

/**
 * Decodes a Kafka record value: JSON, a CloudEvents envelope of our type, and a valid event whose
 * id matches the envelope's. Errors name the field (`data.` prefixes the event's own fields).
 */
export function decodeCrashMessage(value: Buffer | null): CrashMessageDecoding {
  const parsed = envelopeOf(value, CRASH_EVENT_TYPE);
  if (!parsed.ok) return parsed;
  const result = validateCrashEvent(parsed.envelope.data);
  if (!result.ok) return invalid(result.errors.map((e) => `data.${e}`));
  if (parsed.envelope.id !== result.value.crash.id) return invalid(['id: must equal data.crash.id']);
  return result;
}

export const ANALYSIS_EVENT_TYPE = 'io.podmortem.analysis.v1';
export const ANALYSIS_DATASCHEMA = 'https://podmortem.io/schemas/analysis-record/v1';
export const ANALYSIS_SOURCE = '/analyzer';

/** A CloudEvents 1.0 structured-mode JSON envelope carrying one analysis record. */
export interface AnalysisCloudEvent {
  specversion: '1.0';
  type: typeof ANALYSIS_EVENT_TYPE;
  source: typeof ANALYSIS_SOURCE;
  id: string;
  time: string;
  subject: string;
  datacontenttype: 'application/json';
  dataschema: typeof ANALYSIS_DATASCHEMA;
  data: AnalysisRecord;
}

/**
 * `<crash id>/<analyzed_at>`: each analysis of a crash is an event of its own (CloudEvents wants
 * source + id unique), and a re-delivery of one keeps its id. Which analysis wins in the crash's
 * document is decided by `analyzed_at`, not by the order of arrival.
 */
export function analysisEventId(record: AnalysisRecord): string {
  return `${record.crash.id}/${record.analysis.analyzed_at}`;
}

export function toAnalysisCloudEvent(record: AnalysisRecord): AnalysisCloudEvent {
  return {
    specversion: '1.0',
    type: ANALYSIS_EVENT_TYPE,
    source: ANALYSIS_SOURCE,
    id: analysisEventId(record),
    time: record.analysis.analyzed_at,
    subject: record.crash.id,
    datacontenttype: 'application/json',
    dataschema: ANALYSIS_DATASCHEMA,
    data: record,
  };
}

/** The analysis record of `event` as a record value; its key is `crashKey(event)`. */
export function encodeAnalysisMessage(event: CrashEvent, analysis: AnalysisResult): Buffer {
  return Buffer.from(JSON.stringify(toAnalysisCloudEvent(analysisRecordOf(event, analysis))));
}

/** Decodes an analysis record value as strictly as a crash's (see decodeCrashMessage). */
export function decodeAnalysisMessage(value: Buffer | null): AnalysisMessageDecoding {
  const parsed = envelopeOf(value, ANALYSIS_EVENT_TYPE);
  if (!parsed.ok) return parsed;
  const result = validateAnalysisRecord(parsed.envelope.data);
  if (!result.ok) return invalid(result.errors.map((e) => `data.${e}`));
  if (parsed.envelope.id !== analysisEventId(result.value)) {
    return invalid(['id: must equal data.crash.id/data.analysis.analyzed_at']);
  }
  return result;
}

export const DUMP_REMOVAL_EVENT_TYPE = 'io.podmortem.dump-removal.v1';
export const DUMP_REMOVAL_DATASCHEMA = 'https://podmortem.io/schemas/dump-removal/v1';

export type DumpRemovalMessageDecoding = MessageDecoding<DumpRemoval>;

/**
 * A CloudEvents 1.0 envelope of one dump removal. A dump is removed once, so its id is the crash
 * id's: a re-delivery (or a retried removal) keeps it. `source` says who removed it.
 */
export function toDumpRemovalCloudEvent(record: DumpRemoval) {
  return {
    specversion: '1.0',
    type: DUMP_REMOVAL_EVENT_TYPE,
    source: record.dump.removed_by === 'retention' ? '/retention' : '/query-api',
    id: `${record.crash.id}/dump-removal`,
    time: record.dump.removed_at,
    subject: record.crash.id,
    datacontenttype: 'application/json',
    dataschema: DUMP_REMOVAL_DATASCHEMA,
    data: record,
  } as const;
}

/** The removal as a record value; its key is `crashKey(record)`. */
export function encodeDumpRemovalMessage(record: DumpRemoval): Buffer {
  return Buffer.from(JSON.stringify(toDumpRemovalCloudEvent(record)));
}

/** Decodes a dump removal value as strictly as a crash's (see decodeCrashMessage). */
export function decodeDumpRemovalMessage(value: Buffer | null): DumpRemovalMessageDecoding {
  const parsed = envelopeOf(value, DUMP_REMOVAL_EVENT_TYPE);
  if (!parsed.ok) return parsed;
  const result = validateDumpRemoval(parsed.envelope.data);
  if (!result.ok) return invalid(result.errors.map((e) => `data.${e}`));
  if (parsed.envelope.id !== `${result.value.crash.id}/dump-removal`) {
    return invalid(['id: must equal data.crash.id/dump-removal']);
  }
  return result;
}

export const DUMP_DELETION_EVENT_TYPE = 'io.podmortem.dump-deletion.v1';

/** A user's request to delete a crash's stored core, as the retention service performs it. */
export interface DumpDeletionRequest {
  /** The crash event as stored (without the analyzer's fields). */
  event: CrashEvent;
  /** The Kubernetes username of the caller the API authorized. */
  requestedBy: string;
  requestedAt: Date;
}

export type DumpDeletionMessageDecoding = MessageDecoding<DumpDeletionRequest>;

const MAX_USERNAME_CHARS = 512;

/**
 * A deletion request as a record value: a CloudEvents 1.0 envelope whose data is the crash event
 * (so the request is validated by the crash event's own schema), whose `time` is when it was
 * asked and whose extension attribute `requestedby` says by whom. Its key is `crashKey(event)`.
 */
export function encodeDumpDeletionMessage(request: DumpDeletionRequest): Buffer {
  const { event } = request;
  return Buffer.from(
    JSON.stringify({
      specversion: '1.0',
      type: DUMP_DELETION_EVENT_TYPE,
      source: '/query-api',
      id: `${event.crash.id}/dump-deletion/${request.requestedAt.toISOString()}`,
      time: request.requestedAt.toISOString(),
      subject: event.crash.id,
      requestedby: request.requestedBy,
      datacontenttype: 'application/json',
      dataschema: CRASH_DATASCHEMA,
      data: event,
    }),
  );
}

/** Decodes a deletion request as strictly as a crash (see decodeCrashMessage). */
export function decodeDumpDeletionMessage(value: Buffer | null): DumpDeletionMessageDecoding {
  const parsed = envelopeOf(value, DUMP_DELETION_EVENT_TYPE);
  if (!parsed.ok) return parsed;
  const { envelope } = parsed;
  const errors: string[] = [];
  const by = envelope.requestedby;
  if (typeof by !== 'string' || by.length === 0 || by.length > MAX_USERNAME_CHARS)
    errors.push(`requestedby: must be a username of 1 to ${MAX_USERNAME_CHARS} characters`);
  const time = typeof envelope.time === 'string' ? new Date(envelope.time) : undefined;
  if (time === undefined || Number.isNaN(time.getTime())) errors.push('time: must be an RFC 3339 date-time');
  const result = validateCrashEvent(envelope.data);
  if (!result.ok) errors.push(...result.errors.map((e) => `data.${e}`));
  if (errors.length > 0 || !result.ok || time === undefined || typeof by !== 'string') return invalid(errors);
  if (envelope.subject !== result.value.crash.id) return invalid(['subject: must equal data.crash.id']);
  return { ok: true, value: { event: result.value, requestedBy: by, requestedAt: time } };
}
