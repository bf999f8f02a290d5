import type { Logger } from '@podmortem/contract/runtime';
import { removeDump, type RemovalProducer, type Store } from '@podmortem/contract/store';
import {
  noteMissing,
  planRetention,
  type NamespaceView,
  type RetentionPlan,
  type RetentionRules,
} from './plan.ts';
import { scanStore } from './scan.ts';
import type { RetentionTelemetry } from './telemetry.ts';

// One retention pass: scan, plan, act. The lease is asked again right before every deletion, so
// an instance that lost it (a rebalance gave partition 0 to another) stops at the next step and
// two instances never both delete. A failed deletion is logged and counted and the pass goes on:
// every step is idempotent, so the next pass completes it.

export const REMOVED_BY = 'retention';

export interface PassParams {
  store: Store;
  producer: RemovalProducer;
  removalTopic: string;
  logger: Logger;
  telemetry: RetentionTelemetry;
  rules: RetentionRules;
  dryRun: boolean;
  /** The namespaces the Kubernetes API lists now; undefined when it could not be read. */
  listed: ReadonlySet<string> | undefined;
  /**
   * When each namespace on the store but not listed was first seen missing: the instance's memory
   * across passes, brought up to date by the pass (left as it is while the API cannot be read).
   */
  goneSince: Map<string, Date>;
  /** True while this instance holds the lease. */
  isActive: () => Promise<boolean>;
  now?: Date;
  kafkaTimeoutMs?: number;
}

export interface PassResult {
  plan: RetentionPlan;
  removed: number;
  bytesFreed: number;
  eventsDeleted: number;
  modulesDeleted: number;
  malformed: number;
  failed: number;
  /** The lease was lost part-way: the rest was left to the new holder. */
  leaseLost: boolean;
}

export async function runPass(params: PassParams): Promise<PassResult> {
  const { store, logger, telemetry } = params;
  const now = params.now ?? new Date();
  // The store's own namespace folders, not the API's list: a namespace deleted while no
  // retention instance ran is still found, and the API only says which of them still exist.
  const folders = await store.namespaces();
  let namespaces: NamespaceView | undefined;
  if (params.listed !== undefined) {
    noteMissing(params.goneSince, params.listed, folders, now);
    namespaces = { present: params.listed, goneSince: params.goneSince };
  }
  const scanned = await scanStore(store, folders);
  for (const key of scanned.malformed)
    logger.warn({ key }, 'stored event is not a crash event of its key: left alone');
  telemetry.malformedEvents.inc(scanned.malformed.length);
  const plan = planRetention({
    crashes: scanned.crashes,
    modules: scanned.modules,
    now,
    namespaces,
    rules: params.rules,
  });
  const result: PassResult = {
    plan,
    removed: 0,
    bytesFreed: 0,
    eventsDeleted: 0,
    modulesDeleted: 0,
    malformed: scanned.malformed.length,
    failed: 0,
    leaseLost: false,
  };

  if (params.dryRun) {
    for (const d of plan.dumps)
      logger.info(
        { key: d.crash.dumpKey, rule: d.rule, reason: d.reason, dryRun: true },
        'would remove core',
      );
    for (const c of plan.events) logger.info({ key: c.eventKey, dryRun: true }, 'would delete event');
    for (const m of plan.modules) logger.info({ key: m.key, dryRun: true }, 'would delete module');
    telemetry.passes.inc({ result: 'dry-run' });
    logger.info(counts(result, plan), 'retention dry run done: nothing deleted');
    return result;
  }

  const act = async (operation: string, key: string, step: () => Promise<void>): Promise<boolean> => {
    if (!(await params.isActive())) {
      result.leaseLost = true;
      return false;
    }
    try {
      await step();
      return true;
    } catch (err) {
      result.failed++;
      telemetry.errors.inc({ operation });
      logger.error({ err, key }, `retention ${operation} failed; the next pass retries it`);
      return true;
    }
  };

  const removedKeys = new Set<string>();
  for (const d of plan.dumps) {
    const event = scanned.events.get(d.crash.eventKey);
    if (event === undefined) continue;
    const go = await act('remove', d.crash.eventKey, async () => {
      await removeDump({
        store,
        producer: params.producer,
        event,
        change: { status: 'expired', reason: d.reason, removed_at: now, removed_by: REMOVED_BY },
        topic: params.removalTopic,
        ...(params.kafkaTimeoutMs === undefined ? {} : { timeoutMs: params.kafkaTimeoutMs }),
      });
      result.removed++;
      removedKeys.add(d.crash.eventKey);
      result.bytesFreed += d.crash.dumpBytes;
      telemetry.dumpsRemoved.inc({ rule: d.rule });
      telemetry.bytesFreed.inc({ rule: d.rule }, d.crash.dumpBytes);
      logger.info({ key: d.crash.dumpKey, rule: d.rule, reason: d.reason }, 'core removed');
    });
    if (!go) return finish(result, plan, params);
  }
  for (const crash of plan.events) {
    // An event whose core could not be removed this pass stays, so its removal is not lost.
    if (crash.dumpKey !== undefined && !removedKeys.has(crash.eventKey)) continue;
    const go = await act('delete', crash.eventKey, async () => {
      await store.delete(crash.eventKey);
      result.eventsDeleted++;
      telemetry.eventsDeleted.inc();
    });
    if (!go) return finish(result, plan, params);
  }
  for (const module of plan.modules) {
    const go = await act('delete', module.key, async () => {
      await store.delete(module.key);
      result.modulesDeleted++;
      telemetry.modulesDeleted.inc();
    });
    if (!go) return finish(result, plan, params);
  }
  return finish(result, plan, params);
}

function finish(result: PassResult, plan: RetentionPlan, params: PassParams): PassResult {
  params.telemetry.passes.inc({ result: result.leaseLost ? 'lease-lost' : 'done' });
  params.logger.info(
    counts(result, plan),
    result.leaseLost ? 'retention pass stopped: lease lost' : 'retention pass done',
  );
  return result;
}

function counts(result: PassResult, plan: RetentionPlan) {
  return {
    planned: { dumps: plan.dumps.length, events: plan.events.length, modules: plan.modules.length },
    removed: result.removed,
    bytesFreed: result.bytesFreed,
    eventsDeleted: result.eventsDeleted,
    modulesDeleted: result.modulesDeleted,
    malformed: result.malformed,
    failed: result.failed,
  };
}
