import type { CrashEvent } from '@podmortem/contract';
import { isBuildId, MODULES_FOLDER, podCrashFileOf, validateCrashEvent } from '@podmortem/contract';
import { isRemovedDumpStatus } from '@podmortem/contract';
import { readBytes, type Store } from '@podmortem/contract/store';
import type { StoredCrash, StoredModule } from './plan.ts';

// The planner's input read from the store: each namespace folder listed, each event read. An
// event that is not a valid crash event of its own key is counted and left alone, so a bad
// file can never make retention delete anything, nor stop a pass.

export interface ScannedStore {
  crashes: StoredCrash[];
  /** The valid stored event of each crash, by its event key. */
  events: Map<string, CrashEvent>;
  modules: StoredModule[];
  /** Event keys that could not be read as their crash's event. */
  malformed: string[];
}

const MAX_EVENT_BYTES = 4 * 1024 * 1024;

/** Reads the crashes of `namespaces` (folders of the store) and the module folder. */
export async function scanStore(store: Store, namespaces: Iterable<string>): Promise<ScannedStore> {
  const scanned: ScannedStore = { crashes: [], events: new Map(), modules: [], malformed: [] };
  for (const namespace of [...new Set(namespaces)].sort()) {
    const objects = await store.list(namespace);
    const sizes = new Map(objects.map((o) => [o.key, o.size]));
    for (const object of objects) {
      const file = podCrashFileOf(object.key);
      if (file?.kind !== 'event') continue;
      const event = await readEvent(store, object.key);
      if (
        event === undefined ||
        event.crash.id !== file.crashId ||
        event.kubernetes?.pod.uid !== file.podUid
      ) {
        scanned.malformed.push(object.key);
        continue;
      }
      const dumpKey = object.key.slice(0, -'.json'.length) + '.core.zst';
      const dumpBytes = sizes.get(dumpKey);
      scanned.events.set(object.key, event);
      scanned.crashes.push({
        namespace: file.namespace,
        podUid: file.podUid,
        crashId: file.crashId,
        crashedAt: new Date(event['@timestamp']),
        eventKey: object.key,
        ...(dumpBytes === undefined || isRemovedDumpStatus(event.dump.status) ? {} : { dumpKey }),
        dumpBytes: dumpBytes ?? 0,
        buildIds: buildIdsOf(event),
      });
    }
  }
  for (const object of await store.list(MODULES_FOLDER)) {
    const [, buildId] = object.key.split('/');
    if (buildId !== undefined && isBuildId(buildId))
      scanned.modules.push({ buildId, key: object.key, size: object.size, mtime: object.mtime });
  }
  return scanned;
}

async function readEvent(store: Store, key: string): Promise<CrashEvent | undefined> {
  const bytes = await readBytes(store, key, MAX_EVENT_BYTES);
  if (bytes === undefined) return undefined;
  let parsed: unknown;
  try {
    parsed = JSON.parse(bytes.toString('utf8'));
  } catch {
    return undefined;
  }
  const valid = validateCrashEvent(parsed);
  return valid.ok ? valid.value : undefined;
}

function buildIdsOf(event: CrashEvent): string[] {
  const ids = (event.analysis?.modules ?? []).flatMap((m) => (m.build_id === undefined ? [] : [m.build_id]));
  if (event.analysis?.build_id !== undefined) ids.push(event.analysis.build_id);
  return [...new Set(ids)];
}
