import type { CrashEvent } from './crash-event.ts';

export const CRASH_TOPIC = 'podmortem.crashes';
export const CRASH_DLQ_TOPIC = 'podmortem.crashes.dlq';

/** Dead-letter headers: why a record was rejected and where it came from. */
export const DLQ_HEADERS = {
  error: 'podmortem-error',
  errorCode: 'podmortem-error-code',
  sourceTopic: 'podmortem-source-topic',
  sourcePartition: 'podmortem-source-partition',
  sourceOffset: 'podmortem-source-offset',
} as const;

/**
 * Kafka key: every crash of one pod lands in one partition, in order. A crash outside any pod is
 * keyed by its node, so one noisy host cannot spread over every partition either.
 */
export function crashKey(event: CrashEvent): string {
  const k8s = event.kubernetes;
  return k8s ? `${k8s.namespace}/${k8s.pod.uid}` : `_host/${event.collector.node}`;
}
