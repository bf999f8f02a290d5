import { defineErrors, PodmortemError, registryOptions } from '@podmortem/contract/runtime';

// Retention's error codes: what stops a pass or one deletion now and is retried on the next
// pass. A malformed stored event is not among them: it is counted and left alone.

export const RETENTION_ERRORS = defineErrors({
  PM_ERR_STORE_UNAVAILABLE: { retriable: true, message: 'the store could not be listed or read' },
  PM_ERR_KUBE_UNAVAILABLE: { retriable: true, message: 'the Kubernetes API did not list the namespaces' },
  PM_ERR_LEASE_LOST: { retriable: true, message: 'this instance is no longer the active one' },
});

export type RetentionErrorCode = keyof typeof RETENTION_ERRORS;

export class RetentionError extends PodmortemError {
  declare readonly code: RetentionErrorCode;

  constructor(code: RetentionErrorCode, message: string, cause?: unknown) {
    super(code, message, registryOptions(RETENTION_ERRORS[code], cause));
    this.name = 'RetentionError';
  }
}
