import t from 'tap';
import { DUMP_DELETION_TOPIC, DUMP_REMOVAL_TOPIC } from '@podmortem/contract';
import { loadRetentionConfig } from './config.ts';

t.test('defaults: cores kept 30 days, events a year, budgets and dry run off', async (t) => {
  t.match(loadRetentionConfig({}), {
    maxAgeDays: 30,
    eventMaxAgeDays: 365,
    totalBudgetBytes: 0,
    namespaceBudgetBytes: 0,
    namespaceGraceS: 604800,
    dryRun: false,
    removalTopic: DUMP_REMOVAL_TOPIC,
    deletionTopic: DUMP_DELETION_TOPIC,
    deletionGroupId: 'podmortem-retention-deletions',
    leaseTopic: 'podmortem.retention-lease',
    opsPort: 9468,
  });
});

t.test('variables are read', async (t) => {
  const c = loadRetentionConfig({
    PODMORTEM_RETENTION_MAX_AGE_DAYS: '7',
    PODMORTEM_RETENTION_TOTAL_BUDGET_BYTES: '107374182400',
    PODMORTEM_RETENTION_DRY_RUN: 'true',
  });
  t.equal(c.maxAgeDays, 7);
  t.equal(c.totalBudgetBytes, 107374182400);
  t.equal(c.dryRun, true);
});

t.test('bad values are refused naming the variable', async (t) => {
  const bad: [string, string][] = [
    ['PODMORTEM_RETENTION_MAX_AGE_DAYS', 'a month'],
    ['PODMORTEM_RETENTION_MAX_AGE_DAYS', '-1'],
    ['PODMORTEM_RETENTION_TOTAL_BUDGET_BYTES', '1.5'],
    ['PODMORTEM_RETENTION_NAMESPACE_BUDGET_BYTES', '-5'],
    ['PODMORTEM_RETENTION_NAMESPACE_GRACE_S', 'soon'],
    ['PODMORTEM_RETENTION_DRY_RUN', 'maybe'],
    ['PODMORTEM_RETENTION_INTERVAL_S', '0'],
    ['PODMORTEM_RETENTION_EVENT_MAX_AGE_DAYS', '10'],
    ['PODMORTEM_RETENTION_LEASE_TOPIC', DUMP_REMOVAL_TOPIC],
    ['PODMORTEM_RETENTION_DELETION_TOPIC', DUMP_REMOVAL_TOPIC],
    ['PODMORTEM_RETENTION_DELETION_TOPIC', 'podmortem.retention-lease'],
    ['PODMORTEM_RETENTION_DELETION_TOPIC', ''],
    ['PODMORTEM_RETENTION_DELETION_GROUP_ID', 'podmortem-retention'],
  ];
  for (const [key, value] of bad)
    t.throws(() => loadRetentionConfig({ [key]: value }), { name: 'ConfigError', key }, `${key}=${value}`);
});
