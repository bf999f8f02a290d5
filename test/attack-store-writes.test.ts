import { lstatSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import t from 'tap';
import { newCrashId } from '@podmortem/contract';
import { FsStore, isStoreError } from '@podmortem/contract/store';
import { AttackCounter } from './support/attack-count.ts';

// The collector's side of the storage root under attack: links planted in the root (a pod folder
// of team-a that is team-b's, one that is a folder out of the root, a namespace folder that is
// another's) must not redirect a single write — no file and no folder appears in another
// namespace's subtree or outside the root, whatever the collector is asked to store there. The
// store the collector writes through is the one the query API reads (contract/src/store).

const root = mkdtempSync(join(tmpdir(), 'pm-attack-writes-'));
const outside = mkdtempSync(join(tmpdir(), 'pm-attack-outside-'));
t.teardown(() => {
  rmSync(root, { recursive: true, force: true });
  rmSync(outside, { recursive: true, force: true });
});
const store = new FsStore({ root });
const uidB = 'bbbbbbbb-3333-4000-8000-000000000001';
const uidOut = 'cccccccc-3333-4000-8000-000000000001';
mkdirSync(join(root, 'team-b', uidB), { recursive: true });
mkdirSync(join(root, 'team-a'), { recursive: true });
symlinkSync(`../team-b/${uidB}`, join(root, 'team-a', uidB));
symlinkSync(outside, join(root, 'team-a', uidOut));
symlinkSync('team-b', join(root, 'team-c'));

/** Every entry below `dir`, as relative paths (links not followed). */
function tree(dir: string, prefix = ''): string[] {
  return readdirSync(dir).flatMap((name) => {
    const rel = prefix ? `${prefix}/${name}` : name;
    const st = lstatSync(join(dir, name));
    return st.isDirectory() ? [rel, ...tree(join(dir, name), rel)] : [rel];
  });
}

const before = { teamB: tree(join(root, 'team-b')), outside: tree(outside) };
const id = newCrashId();
const keys = [
  `team-a/${uidB}/api/${id}.core.zst`,
  `team-a/${uidB}/api/${id}.json`,
  `team-a/${uidOut}/api/${id}.core.zst`,
  `team-a/${uidOut}/api/${id}.json`,
  `team-c/${uidB}/web/${id}.json`,
  `team-c/new-uid/web/${id}.json`,
];

const c = new AttackCounter('store writes');

t.test('writes through planted links are refused, and leave nothing behind them', async (t) => {
  for (const key of keys) {
    for (const write of [
      () => store.putBytes(key, Buffer.from('{"forged":true}')),
      () => store.put(key, Readable.from([Buffer.from('forged core')])),
    ]) {
      c.requests++;
      const err = await write().then(
        () => undefined,
        (e: unknown) => e,
      );
      t.ok(
        isStoreError(err, 'PM_ERR_STORE_NOT_A_FILE') || isStoreError(err, 'PM_ERR_STORE_BAD_KEY'),
        `${key}: refused (${err instanceof Error ? err.message : 'written'})`,
      );
    }
  }
  const newInB = tree(join(root, 'team-b')).filter((p) => !before.teamB.includes(p));
  const newOutside = tree(outside).filter((p) => !before.outside.includes(p));
  // Each file or folder that appeared where a write was refused counts as a leak of the write.
  c.leaks += newInB.length + newOutside.length;
  for (const p of [...newInB.map((x) => `team-b/${x}`), ...newOutside.map((x) => `outside/${x}`)])
    c.note(`left behind: ${p}`);
  t.same(newInB, [], "nothing new in team-b's subtree, not even a folder");
  t.same(newOutside, [], 'nothing new outside the root, not even a folder');
});

t.test('summary', async (t) => {
  c.report(t);
});
