import { defineErrors, PodmortemError, type PodmortemErrorOptions } from '@podmortem/contract/runtime';

// The agent's error registry. Whether trying again can help decides what happens to a spool
// entry: retriable errors keep it in the spool (retried with backoff), permanent ones move it
// aside to the spool's rejected folder, counted and logged, never silently dropped.

export const AGENT_ERRORS = defineErrors({
  PM_ERR_SPOOL_ENTRY_INVALID: { retriable: false, message: 'spool entry is unreadable or malformed' },
  PM_ERR_EVENT_INVALID: { retriable: false, message: 'crash event does not validate' },
  PM_ERR_KUBE_UNAVAILABLE: { retriable: true, message: 'Kubernetes API unreachable' },
  PM_ERR_POD_PENDING: { retriable: true, message: "the crashed container's pod is not known yet" },
  PM_ERR_POD_STATE: { retriable: false, message: 'pod cache file is unreadable or malformed' },
  PM_ERR_STORAGE_FULL: { retriable: true, message: 'storage root is full' },
  PM_ERR_STORAGE: { retriable: true, message: 'storing the crash failed' },
  PM_ERR_OTLP_EXPORT: { retriable: true, message: 'OTLP export not acknowledged' },
  PM_ERR_KAFKA: { retriable: true, message: 'Kafka did not acknowledge the crash' },
  PM_ERR_SYSCTL: { retriable: false, message: 'cannot set a kernel setting' },
  PM_ERR_HANDLER_INSTALL: { retriable: false, message: 'cannot install the crash handler' },
});

export type AgentErrorCode = keyof typeof AGENT_ERRORS;

export class AgentError extends PodmortemError {
  constructor(code: AgentErrorCode, detail: string, options: Omit<PodmortemErrorOptions, 'retriable'> = {}) {
    const def = AGENT_ERRORS[code];
    super(code, `${def.message}: ${detail}`, { ...options, retriable: def.retriable });
    this.name = 'AgentError';
  }
}

export function errorCode(err: unknown): string {
  return err instanceof PodmortemError ? err.code : 'PM_ERR_UNEXPECTED';
}
