import { Type, type Static } from '@sinclair/typebox';
import { REMOVED_DUMP_STATUSES, type CrashEvent, type RemovedDumpStatus } from './crash-event.ts';
import { crashReferenceProperties } from './analysis-record.ts';
import { validatorOf, type Validation } from './validate.ts';

// The dump removal, version 1: what whoever takes a stored core away (the retention service by
// age or quota, the query API for a user's delete) publishes on the dump-removal topic. Like the
// analysis record it carries only what the indexer needs to merge the removal into the crash's
// document without reading the crash first (docs/architecture.md §3): the crash id, the crash's
// `@timestamp`, the tenancy fields for a document the removal reaches before the crash does, and
// what the Kafka key is made of.

const strict = { additionalProperties: false } as const;

export const DumpRemovalSchema = Type.Object(
  {
    ...crashReferenceProperties,
    dump: Type.Object(
      {
        status: Type.Unsafe<RemovedDumpStatus>({
          type: 'string',
          enum: [...REMOVED_DUMP_STATUSES],
          description: "'expired' by retention, 'deleted' by a user",
        }),
        reason: Type.String({ minLength: 1, maxLength: 1024, description: 'Why, for people' }),
        removed_at: Type.String({ format: 'date-time' }),
        removed_by: Type.String({
          minLength: 1,
          maxLength: 512,
          description: "The user's Kubernetes username, or 'retention'",
        }),
      },
      strict,
    ),
  },
  {
    ...strict,
    $id: 'https://podmortem.io/schemas/dump-removal/v1',
    title: 'podmortem dump removal v1',
  },
);

export type DumpRemoval = Static<typeof DumpRemovalSchema>;

/** What became of a stored core, and why, when and by whom. */
export interface DumpChange {
  status: RemovedDumpStatus;
  reason: string;
  removed_at: Date;
  removed_by: string;
}

/** A user's deletion: the one wording the API, the CLI and retention agree on. */
export function userDeletion(username: string, at: Date): DumpChange {
  return { status: 'deleted', reason: `deleted by ${username}`, removed_at: at, removed_by: username };
}

/** Validates an untrusted value as a dump removal v1. */
export const validateDumpRemoval: (value: unknown) => Validation<DumpRemoval> = validatorOf<DumpRemoval>(
  DumpRemovalSchema,
  'dump removal v1',
);

/** The record of a change to a crash's dump. */
export function dumpRemovalOf(event: CrashEvent, change: DumpChange): DumpRemoval {
  const k8s = event.kubernetes;
  return {
    schema_version: 1,
    '@timestamp': event['@timestamp'],
    crash: { id: event.crash.id },
    ...(k8s ? { kubernetes: { namespace: k8s.namespace, pod: { uid: k8s.pod.uid } } } : {}),
    collector: { node: event.collector.node },
    dump: {
      status: change.status,
      reason: change.reason,
      removed_at: change.removed_at.toISOString(),
      removed_by: change.removed_by,
    },
  };
}
