import t from 'tap';
import { dumpRelPath, eventRelPath, isBuildId, isSafeSegment, moduleKey } from './storage-layout.ts';
import { newCrashId, isCrashId, crashIdTime } from './crash-id.ts';
import { crashIndexFor, crashIndexMonth } from './index-template.ts';
import { validExamples } from './examples.ts';

t.test('stored paths follow <namespace>/<pod-uid>/<container>/<crash-id>', async (t) => {
  for (const { name, event } of validExamples()) {
    if (event.dump.path) t.equal(dumpRelPath(event), event.dump.path, name);
    t.equal(eventRelPath(event), dumpRelPath(event).replace(/\.core\.zst$/, '.json'), name);
  }
});

t.test('segments that could leave the storage root are refused', async (t) => {
  for (const bad of ['..', '.', '', '../x', 'a/b', 'a\\b', '.hidden', 'a..b', 'x\0y']) {
    t.equal(isSafeSegment(bad), false, JSON.stringify(bad));
  }
  for (const good of ['payments', '5f0c8a52-8d7e-4c11-9f70-3f2b6c7d8e01', 'api', '_host', 'node-a.example']) {
    t.equal(isSafeSegment(good), true, good);
  }
});

t.test('crash ids are UUIDv7 that sort by time', async (t) => {
  const a = newCrashId(1_700_000_000_000);
  const b = newCrashId(1_700_000_000_001);
  t.ok(isCrashId(a) && isCrashId(b));
  t.ok(a < b, 'later id sorts after');
  t.equal(crashIdTime(a), 1_700_000_000_000);
  t.not(newCrashId(5), newCrashId(5), 'random bits differ');
});

t.test('monthly index names come from the crash time in UTC', async (t) => {
  t.equal(crashIndexFor('2026-11-30T23:59:59.999-02:00'), 'podmortem-crashes-2026.12');
  t.equal(crashIndexFor('2026-01-01T00:00:00Z'), 'podmortem-crashes-2026.01');
  t.throws(() => crashIndexFor('soon'), /not a time/);
  t.same(crashIndexMonth('podmortem-crashes-2026.03'), new Date(Date.UTC(2026, 2, 1)));
  t.equal(crashIndexMonth('podmortem-crashes'), undefined);
});

t.test('modules are kept by build id outside every namespace, and a bad build id is refused', async (t) => {
  t.equal(moduleKey('ab12'), '_buildid/ab12/executable');
  t.equal(moduleKey('ab12', 'debuginfo'), '_buildid/ab12/debuginfo');
  t.throws(() => moduleKey('../etc'), /not lower-case hex/);
  t.throws(() => moduleKey('AB12'), /not lower-case hex/);
  t.ok(isBuildId('0123456789abcdef'));
  t.notOk(isBuildId(''));
});
