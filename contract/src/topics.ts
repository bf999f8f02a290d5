export const CRASH_TOPIC = 'podmortem.crashes';
export const CRASH_DLQ_TOPIC = 'podmortem.crashes.dlq';
/** Analysis records (analysis-record.ts); their bad records go to the crash DLQ too. */
export const ANALYSIS_TOPIC = 'podmortem.analyses';
/**
 * Dump removals (dump-removal.ts): a stored core expired by retention or deleted by a user, keyed
 * like its crash; the indexer merges each into the crash's document. Bad records go to the crash DLQ.
 */
export const DUMP_REMOVAL_TOPIC = 'podmortem.dump-removals';
/**
 * Dump deletion requests (a user's DELETE through the query API): each record is the crash event
 * as stored, with who asked and when, keyed like the crash. The retention service consumes it and
 * performs the removal, so the API never needs write access to the store.
 */
export const DUMP_DELETION_TOPIC = 'podmortem.dump-deletions';
/**
 * Requests to analyse a crash again (the query API's re-analysis): each record is the crash event
 * as stored, keyed like the crash; the analyzer consumes it beside the crash topic.
 */
export const ANALYSIS_REQUEST_TOPIC = 'podmortem.analysis-requests';

/** Dead-letter headers: why a record was rejected and where it came from. */
export const DLQ_HEADERS = {
  error: 'podmortem-error',
  errorCode: 'podmortem-error-code',
  sourceTopic: 'podmortem-source-topic',
  sourcePartition: 'podmortem-source-partition',
  sourceOffset: 'podmortem-source-offset',
  /** On a letter cut to fit the dead-letter topic: why, and what was cut (value, headers). */
  truncated: 'podmortem-truncated',
  /** On a cut letter: sha256 (hex) and size in bytes of the original record value. */
  originalSha256: 'podmortem-original-sha256',
  originalBytes: 'podmortem-original-bytes',
} as const;

/** What a Kafka key is made of: a crash event, an analysis record and a dump removal all have it. */
export interface Keyed {
  kubernetes?: { namespace: string; pod: { uid: string } };
  collector: { node: string };
}

/**
 * Kafka key: every crash of one pod lands in one partition, in order. A crash outside any pod is
 * keyed by its node, so one noisy host cannot spread over every partition either. A crash's
 * analysis record has the same key, so all analyses of one crash stay in order in one partition.
 */
export function crashKey(event: Keyed): string {
  const k8s = event.kubernetes;
  return k8s ? `${k8s.namespace}/${k8s.pod.uid}` : `_host/${event.collector.node}`;
}
