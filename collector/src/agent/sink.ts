import type { CrashEvent } from '@podmortem/contract';
import type { Component } from '@podmortem/contract/runtime';

// Where a stored crash is announced. Delivery announces every crash to every sink at once, and
// deletes the spool entry only when all of them acknowledged it; a sink that fails is retried
// with backoff (alone: the others' acknowledgements are kept), across agent restarts too.

export interface Sink extends Component {
  /**
   * Keys the sink's acknowledgement in each entry's saved delivery state and labels its failures
   * (podmortem_collector_delivery_failures_total{step}). Renaming a sink announces every entry
   * half-delivered under the old name to it again.
   */
  readonly name: string;
  /**
   * Resolves once the other side acknowledged the crash. Rejects with a retriable error for what
   * may pass (it is tried again), a permanent one for a crash it can never take (the entry is
   * then moved to the spool's rejected folder). The same crash may come twice (after a restart):
   * the crash id tells the copies apart.
   */
  announce(event: CrashEvent): Promise<void>;
}
