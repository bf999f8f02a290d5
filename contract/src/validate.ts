import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { CrashEventSchema, type CrashEvent } from './crash-event.ts';

export type Validation<T> = { ok: true; value: T } | { ok: false; errors: string[] };

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: false });
// ajv-formats is CommonJS: from ESM its default import is module.exports, which holds `default`.
addFormats.default(ajv);
const check = ajv.compile<CrashEvent>(CrashEventSchema);

/** Names the field in dotted form (`kubernetes.pod.uid`), as users of Kibana know it. */
function fieldOf(error: ErrorObject): string {
  const segments = error.instancePath.split('/').slice(1).map(decodePointerSegment);
  const params = error.params as Record<string, unknown>;
  if (error.keyword === 'required') segments.push(String(params.missingProperty));
  if (error.keyword === 'additionalProperties') segments.push(String(params.additionalProperty));
  return segments.length === 0 ? '(event)' : segments.join('.');
}

function decodePointerSegment(segment: string): string {
  return segment.replaceAll('~1', '/').replaceAll('~0', '~');
}

function describe(error: ErrorObject): string {
  switch (error.keyword) {
    case 'required':
      return 'is required';
    case 'additionalProperties':
      return 'is not a field of crash event v1';
    case 'enum':
      return `must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify((error.params as { allowedValue: unknown }).allowedValue)}`;
    default:
      return error.message ?? error.keyword;
  }
}

/** Validates an untrusted value as a crash event v1; every error names the field it is about. */
export function validateCrashEvent(value: unknown): Validation<CrashEvent> {
  if (check(value)) return { ok: true, value };
  const errors = (check.errors ?? []).map((e) => `${fieldOf(e)}: ${describe(e)}`);
  return { ok: false, errors: [...new Set(errors)] };
}
