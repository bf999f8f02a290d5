// What retention deletes, decided without touching anything: the pass (pass.ts) builds the input
// from the store and the Kubernetes API, this module decides, and only the pass acts. Kept pure so
// every rule is proven by unit tests on plain data.

export type RemovalRule = 'age' | 'namespace-deleted' | 'namespace-budget' | 'total-budget';

/** One crash as the store holds it. */
export interface StoredCrash {
  namespace: string;
  podUid: string;
  crashId: string;
  crashedAt: Date;
  eventKey: string;
  /** The core's key when the store still holds it. */
  dumpKey?: string;
  /** Stored bytes of the core; 0 without one. */
  dumpBytes: number;
  /** Build ids of the modules the crash mapped. */
  buildIds: readonly string[];
}

/** A module file of the store's _buildid folder. */
export interface StoredModule {
  buildId: string;
  key: string;
  size: number;
  mtime: Date;
}

export interface NamespaceView {
  /** Namespaces the Kubernetes API lists now. */
  present: ReadonlySet<string>;
  /** When each absent namespace was first seen absent; one not in here counts as gone now. */
  goneSince: ReadonlyMap<string, Date>;
}

export interface RetentionRules {
  /** Cores older than this go; 0: off. */
  maxAgeDays: number;
  /** Events (and a core still there) older than this go; 0: off. */
  eventMaxAgeDays: number;
  /** Oldest cores go until the store holds at most this many bytes of cores; 0: off. */
  totalBudgetBytes: number;
  /** The same per namespace; 0: off. */
  namespaceBudgetBytes: number;
  /** Cores of a namespace gone this long go; 0: off. */
  namespaceGraceS: number;
  /** An unreferenced module this new is kept: its crash's event may still be on its way. */
  moduleGraceS: number;
}

export interface PlanInput {
  crashes: readonly StoredCrash[];
  modules: readonly StoredModule[];
  now: Date;
  /** Undefined when the namespace rule is off (or the API could not be read this pass). */
  namespaces: NamespaceView | undefined;
  rules: RetentionRules;
}

export interface DumpDeletion {
  crash: StoredCrash;
  rule: RemovalRule;
  reason: string;
}

export interface RetentionPlan {
  /** Cores to remove, oldest first, each with the first rule that took it. */
  dumps: DumpDeletion[];
  /** Events past the event age, oldest first (their core, if any, is in `dumps` too). */
  events: StoredCrash[];
  /** Module files no crash keeping its core references. */
  modules: StoredModule[];
}

const DAY_MS = 86_400_000;

/**
 * Brings `goneSince` up to date with one pass's sight of the namespaces: a listed one is not gone;
 * one on the store and not listed is gone since `now` unless it was already missing (the API says
 * nothing of when a namespace went, so a first sight is the best bound, and a later one only
 * keeps cores longer); one neither listed nor on the store any more is forgotten.
 */
export function noteMissing(
  goneSince: Map<string, Date>,
  listed: ReadonlySet<string>,
  onStore: Iterable<string>,
  now: Date,
): void {
  const stored = new Set(onStore);
  for (const name of goneSince.keys()) if (listed.has(name) || !stored.has(name)) goneSince.delete(name);
  for (const name of stored) if (!listed.has(name) && !goneSince.has(name)) goneSince.set(name, now);
}

export function planRetention(input: PlanInput): RetentionPlan {
  const { rules, now } = input;
  const oldestFirst = [...input.crashes].sort(
    (a, b) => a.crashedAt.getTime() - b.crashedAt.getTime() || a.crashId.localeCompare(b.crashId),
  );
  const taken = new Map<string, DumpDeletion>();
  const take = (crash: StoredCrash, rule: RemovalRule, reason: string) => {
    if (crash.dumpKey !== undefined && !taken.has(crash.eventKey))
      taken.set(crash.eventKey, { crash, rule, reason });
  };

  const events =
    rules.eventMaxAgeDays > 0
      ? oldestFirst.filter((c) => now.getTime() - c.crashedAt.getTime() > rules.eventMaxAgeDays * DAY_MS)
      : [];
  for (const crash of events) take(crash, 'age', `age: event older than ${days(rules.eventMaxAgeDays)}`);

  if (rules.maxAgeDays > 0) {
    for (const crash of oldestFirst)
      if (now.getTime() - crash.crashedAt.getTime() > rules.maxAgeDays * DAY_MS)
        take(crash, 'age', `age: older than ${days(rules.maxAgeDays)}`);
  }

  if (rules.namespaceGraceS > 0 && input.namespaces !== undefined) {
    const { present, goneSince } = input.namespaces;
    for (const crash of oldestFirst) {
      if (present.has(crash.namespace)) continue;
      const since = goneSince.get(crash.namespace) ?? now;
      if (now.getTime() - since.getTime() > rules.namespaceGraceS * 1000)
        take(crash, 'namespace-deleted', `namespace deleted: gone since ${since.toISOString()}`);
    }
  }

  const kept = () => oldestFirst.filter((c) => c.dumpKey !== undefined && !taken.has(c.eventKey));

  if (rules.namespaceBudgetBytes > 0) {
    const byNamespace = new Map<string, StoredCrash[]>();
    for (const crash of kept())
      byNamespace.set(crash.namespace, [...(byNamespace.get(crash.namespace) ?? []), crash]);
    for (const [namespace, crashes] of byNamespace) {
      let bytes = crashes.reduce((sum, c) => sum + c.dumpBytes, 0);
      for (const crash of crashes) {
        if (bytes <= rules.namespaceBudgetBytes) break;
        take(
          crash,
          'namespace-budget',
          `namespace budget: ${namespace} over ${size(rules.namespaceBudgetBytes)}`,
        );
        bytes -= crash.dumpBytes;
      }
    }
  }

  if (rules.totalBudgetBytes > 0) {
    const crashes = kept();
    let bytes = crashes.reduce((sum, c) => sum + c.dumpBytes, 0);
    for (const crash of crashes) {
      if (bytes <= rules.totalBudgetBytes) break;
      take(crash, 'total-budget', `total budget: store over ${size(rules.totalBudgetBytes)}`);
      bytes -= crash.dumpBytes;
    }
  }

  // Modules serve the debugging of a core: once no core that mapped them is left, they go.
  const referenced = new Set(kept().flatMap((c) => c.buildIds));
  const modules = input.modules.filter(
    (m) => !referenced.has(m.buildId) && now.getTime() - m.mtime.getTime() > rules.moduleGraceS * 1000,
  );

  const dumps = [...taken.values()].sort(
    (a, b) =>
      a.crash.crashedAt.getTime() - b.crash.crashedAt.getTime() ||
      a.crash.crashId.localeCompare(b.crash.crashId),
  );
  return { dumps, events, modules };
}

function days(n: number): string {
  return n === 1 ? '1 day' : `${n} days`;
}

const UNITS: [number, string][] = [
  [1024 ** 4, 'TiB'],
  [1024 ** 3, 'GiB'],
  [1024 ** 2, 'MiB'],
  [1024, 'KiB'],
];

/** Bytes as an operator set them: whole units where they divide, else plain bytes. */
export function size(bytes: number): string {
  for (const [unit, name] of UNITS) if (bytes % unit === 0) return `${bytes / unit} ${name}`;
  return `${bytes} bytes`;
}
