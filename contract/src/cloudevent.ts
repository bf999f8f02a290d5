import type { CrashEvent } from './crash-event.ts';
import { validateCrashEvent, type Validation } from './validate.ts';

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

/**
 * Decodes a Kafka record value: JSON, a CloudEvents envelope of our type, and a valid event whose
 * id matches the envelope's. Errors name the field (`data.` prefixes the event's own fields).
 */
export function decodeCrashMessage(value: Buffer | null): Validation<CrashEvent> {
  if (value === null || value.length === 0) return { ok: false, errors: ['(record): value is empty'] };
  let parsed: unknown;
  try {
    parsed = JSON.parse(value.toString('utf8'));
  } catch (err) {
    return { ok: false, errors: [`(record): not JSON: ${(err as Error).message}`] };
  }
  if (!isRecord(parsed)) return { ok: false, errors: ['(record): must be a JSON object'] };
  if (parsed.specversion !== '1.0') return { ok: false, errors: ['specversion: must be "1.0"'] };
  if (parsed.type !== CRASH_EVENT_TYPE) return { ok: false, errors: [`type: must be "${CRASH_EVENT_TYPE}"`] };
  const result = validateCrashEvent(parsed.data);
  if (!result.ok) return { ok: false, errors: result.errors.map((e) => `data.${e}`) };
  if (parsed.id !== result.value.crash.id) return { ok: false, errors: ['id: must equal data.crash.id'] };
  return result;
}
