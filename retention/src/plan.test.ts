import t from 'tap';
import {
  noteMissing,
  planRetention,
  size,
  type PlanInput,
  type RetentionRules,
  type StoredCrash,
} from './plan.ts';

const NOW = new Date('2026-12-03T12:00:00Z');
const DAY = 86_400_000;
const OFF: RetentionRules = {
  maxAgeDays: 0,
  eventMaxAgeDays: 0,
  totalBudgetBytes: 0,
  namespaceBudgetBytes: 0,
  namespaceGraceS: 0,
  moduleGraceS: 0,
};

function crash(
  id: string,
  namespace: string,
  daysAgo: number,
  bytes = 100,
  buildIds: string[] = [],
): StoredCrash {
  const base = `${namespace}/uid-${id}/app/${id}`;
  return {
    namespace,
    podUid: `uid-${id}`,
    crashId: id,
    crashedAt: new Date(NOW.getTime() - daysAgo * DAY),
    eventKey: `${base}.json`,
    dumpKey: `${base}.core.zst`,
    dumpBytes: bytes,
    buildIds,
  };
}

const input = (
  crashes: StoredCrash[],
  rules: Partial<RetentionRules>,
  extra: Partial<PlanInput> = {},
): PlanInput => ({
  crashes,
  modules: [],
  now: NOW,
  namespaces: undefined,
  rules: { ...OFF, ...rules },
  ...extra,
});

const ids = (plan: ReturnType<typeof planRetention>) => plan.dumps.map((d) => d.crash.crashId);

t.test('every rule off: nothing is deleted', async (t) => {
  const plan = planRetention(input([crash('a', 'ns', 400, 10 ** 9)], {}));
  t.same(plan, { dumps: [], events: [], modules: [] });
});

t.test('age: cores older than the limit go, oldest first, with the reason', async (t) => {
  const plan = planRetention(
    input([crash('c', 'ns', 31), crash('b', 'ns', 29), crash('a', 'ns', 40)], { maxAgeDays: 30 }),
  );
  t.same(ids(plan), ['a', 'c']);
  t.same(
    plan.dumps.map((d) => [d.rule, d.reason]),
    [
      ['age', 'age: older than 30 days'],
      ['age', 'age: older than 30 days'],
    ],
  );
  t.same(plan.events, []);
});

t.test('a crash whose core is gone already is not removed again, but its event still ages out', async (t) => {
  const gone = { ...crash('a', 'ns', 400) };
  delete gone.dumpKey;
  gone.dumpBytes = 0;
  const plan = planRetention(input([gone, crash('b', 'ns', 100)], { maxAgeDays: 30, eventMaxAgeDays: 365 }));
  t.same(ids(plan), ['b']);
  t.same(
    plan.events.map((c) => c.crashId),
    ['a'],
  );
});

t.test('event age: the event goes, and its core with it', async (t) => {
  const plan = planRetention(input([crash('a', 'ns', 400), crash('b', 'ns', 10)], { eventMaxAgeDays: 365 }));
  t.same(ids(plan), ['a']);
  t.equal(plan.dumps[0]?.reason, 'age: event older than 365 days');
  t.same(
    plan.events.map((c) => c.crashId),
    ['a'],
  );
});

t.test('total budget: oldest cores go until the store is at or under it', async (t) => {
  const crashes = [
    crash('a', 'x', 5, 400),
    crash('b', 'y', 4, 300),
    crash('c', 'x', 3, 200),
    crash('d', 'y', 2, 100),
  ];
  const plan = planRetention(input(crashes, { totalBudgetBytes: 300 }));
  t.same(ids(plan), ['a', 'b']);
  t.equal(plan.dumps[0]?.reason, 'total budget: store over 300 bytes');
  t.same(ids(planRetention(input(crashes, { totalBudgetBytes: 1000 }))), [], 'exactly at the budget: kept');
  t.equal(planRetention(input(crashes, { totalBudgetBytes: 1024 ** 3 })).dumps.length, 0);
});

t.test('namespace budget: each namespace on its own, oldest first', async (t) => {
  const crashes = [
    crash('a', 'team-a', 5, 600),
    crash('b', 'team-b', 4, 600),
    crash('c', 'team-a', 3, 600),
    crash('d', 'team-a', 2, 600),
  ];
  const plan = planRetention(input(crashes, { namespaceBudgetBytes: 1024 }));
  t.same(ids(plan), ['a', 'c']);
  t.same(
    plan.dumps.map((d) => d.reason),
    ['namespace budget: team-a over 1 KiB', 'namespace budget: team-a over 1 KiB'],
  );
});

t.test('the total budget counts what the earlier rules removed already', async (t) => {
  const crashes = [crash('a', 'ns', 40, 500), crash('b', 'ns', 3, 500), crash('c', 'ns', 2, 500)];
  const plan = planRetention(input(crashes, { maxAgeDays: 30, totalBudgetBytes: 500 }));
  t.same(
    plan.dumps.map((d) => [d.crash.crashId, d.rule]),
    [
      ['a', 'age'],
      ['b', 'total-budget'],
    ],
  );
});

t.test('deleted namespace: kept within the grace period, removed after it', async (t) => {
  const since = new Date(NOW.getTime() - 3600_000);
  const crashes = [crash('a', 'gone', 1), crash('b', 'here', 1), crash('c', 'new-gone', 1)];
  const namespaces = { present: new Set(['here']), goneSince: new Map([['gone', since]]) };
  const within = planRetention(input(crashes, { namespaceGraceS: 7200 }, { namespaces }));
  t.same(ids(within), []);
  const after = planRetention(input(crashes, { namespaceGraceS: 1800 }, { namespaces }));
  t.same(ids(after), ['a'], 'a namespace first seen gone now is within its grace');
  t.equal(after.dumps[0]?.reason, `namespace deleted: gone since ${since.toISOString()}`);
  t.same(
    ids(planRetention(input(crashes, { namespaceGraceS: 1800 }))),
    [],
    'no namespace view: the rule waits',
  );
});

t.test('modules: kept while a remaining core references them, removed once none does', async (t) => {
  const old = new Date(NOW.getTime() - DAY);
  const modules = ['aa', 'bb', 'cc', 'dd'].map((buildId) => ({
    buildId,
    key: `_buildid/${buildId}/executable`,
    size: 10,
    mtime: buildId === 'dd' ? NOW : old,
  }));
  const crashes = [crash('a', 'ns', 40, 1, ['aa', 'bb']), crash('b', 'ns', 1, 1, ['bb'])];
  const plan = planRetention(input(crashes, { maxAgeDays: 30, moduleGraceS: 60 }, { modules }));
  t.same(
    plan.modules.map((m) => m.buildId),
    ['aa', 'cc'],
    'bb is still mapped by b; dd is within its grace',
  );
});

t.test('size names whole units', async (t) => {
  t.equal(size(100 * 1024 ** 3), '100 GiB');
  t.equal(size(10 * 1024 ** 2), '10 MiB');
  t.equal(size(1500), '1500 bytes');
});

t.test('noteMissing: a namespace on the store and not listed is gone from its first sight on', async (t) => {
  const goneSince = new Map<string, Date>([
    ['back-again', new Date(NOW.getTime() - DAY)],
    ['missing-before', new Date(NOW.getTime() - DAY)],
    ['off-the-store', new Date(NOW.getTime() - DAY)],
  ]);
  noteMissing(
    goneSince,
    new Set(['back-again', 'listed']),
    ['back-again', 'listed', 'missing-before', 'new'],
    NOW,
  );
  t.same(
    [...goneSince].sort(),
    [
      ['missing-before', new Date(NOW.getTime() - DAY)],
      ['new', NOW],
    ],
    'a listed one is not gone, an earlier sight stands, one no longer stored is forgotten',
  );
});
