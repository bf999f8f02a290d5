import type { CrashEvent } from './crash-event.ts';
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

/** Why a record is not a crash event: no JSON object at all, or one that is not a valid event. */
export type CrashMessageProblem = 'not-json' | 'invalid';

export type CrashMessageDecoding =
  { ok: true; value: CrashEvent } | { ok: false; problem: CrashMessageProblem; errors: string[] };

/**
 * Decodes a Kafka record value: JSON, a CloudEvents envelope of our type, and a valid event whose
 * id matches the envelope's. Errors name the field (`data.` prefixes the event's own fields).
 */
export function decodeCrashMessage(value: Buffer | null): CrashMessageDecoding {
  const notJson = (error: string): CrashMessageDecoding => ({
    ok: false,
    problem: 'not-json',
    errors: [`(record): ${error}`],
  });
  const invalid = (errors: string[]): CrashMessageDecoding => ({ ok: false, problem: 'invalid', errors });
  if (value === null || value.length === 0) return notJson('value is empty');
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (err) {
    return notJson(`not JSON: ${(err as Error).message}`);
  }
  if (!isRecord(parsed)) return notJson('must be a JSON object');
  if (parsed.specversion !== '1.0') return invalid(['specversion: must be "1.0"']);
  if (parsed.type !== CRASH_EVENT_TYPE) return invalid([`type: must be "${CRASH_EVENT_TYPE}"`]);
  const result = validateCrashEvent(parsed.data);
  if (!result.ok) return invalid(result.errors.map((e) => `data.${e}`));
  if (parsed.id !== result.value.crash.id) return invalid(['id: must equal data.crash.id']);
  return result;
}
