import type { TSchema } from '@sinclair/typebox';
import { Ajv2020, type ErrorObject } from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import { CrashEventSchema, type CrashEvent } from './crash-event.ts';

export type Validation<T> = { ok: true; value: T } | { ok: false; errors: string[] };

const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: false });
// ajv-formats is CommonJS: from ESM its default import is module.exports, which holds `default`.
addFormats.default(ajv);

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

function describe(error: ErrorObject, what: string): string {
  switch (error.keyword) {
    case 'required':
      return 'is required';
    case 'additionalProperties':
      return `is not a field of ${what}`;
    case 'enum':
      return `must be one of ${(error.params as { allowedValues: unknown[] }).allowedValues.join(', ')}`;
    case 'const':
      return `must be ${JSON.stringify((error.params as { allowedValue: unknown }).allowedValue)}`;
    default:
      return error.message ?? error.keyword;
  }
}

/**
 * A validator of untrusted values against a contract schema; every error names the field it is
 * about, and an unknown field is called "not a field of <what>".
 */
export function validatorOf<T>(schema: TSchema, what: string): (value: unknown) => Validation<T> {
  const check = ajv.compile<T>(schema);
  return (value) => {
    if (check(value)) return { ok: true, value };
    const errors = (check.errors ?? []).map((e) => `${fieldOf(e)}: ${describe(e, what)}`);
    return { ok: false, errors: [...new Set(errors)] };
  };
}

/** Validates an untrusted value as a crash event v1. */
export const validateCrashEvent = validatorOf<CrashEvent>(CrashEventSchema, 'crash event v1');
