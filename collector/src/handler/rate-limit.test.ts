import { mkdir, mkdtemp, readFile, rm, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { RATE_STATE_DIR, rateLimitKey, takeDumpSlot } from './rate-limit.ts';

const ID = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);

t.test('the key is the container id of the cgroup, else the executable', async (t) => {
  const cgroup = `0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234abcd_0000_1111_2222_333344445555.slice/cri-containerd-${ID}.scope\n`;
  t.equal(rateLimitKey(cgroup, '/bin/app'), `container:${ID}`);
  t.equal(rateLimitKey(`0::/kubepods/burstable/pod1/${OTHER}\n`, undefined), `container:${OTHER}`);
  t.equal(rateLimitKey('0::/user.slice/session-1.scope\n', '/bin/app'), 'exe:/bin/app');
  t.equal(rateLimitKey(undefined, undefined), 'unknown');
});

async function spool(t: { teardown: (f: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'pm-rate-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('up to maxDumps per key within the window, counted again as the window slides', async (t) => {
  const dir = await spool(t);
  const slot = (key: string, now: number) =>
    takeDumpSlot({ spoolDir: dir, key, maxDumps: 2, windowMs: 1000, now });
  t.match(await slot('k', 10_000), { allowed: true, recent: 0 });
  t.match(await slot('k', 10_100), { allowed: true, recent: 1 });
  t.match(await slot('k', 10_200), { allowed: false, recent: 2 });
  t.match(await slot('other', 10_200), { allowed: true, recent: 0 }, 'keys are counted apart');
  t.match(await slot('k', 11_050), { allowed: true, recent: 1 }, 'the first dump left the window');
  t.match(await takeDumpSlot({ spoolDir: dir, key: 'z', maxDumps: 0, windowMs: 1000, now: 1 }), {
    allowed: false,
  });
});

t.test('an unreadable state file is reset and said so', async (t) => {
  const dir = await spool(t);
  await mkdir(join(dir, RATE_STATE_DIR));
  await writeFile(join(dir, RATE_STATE_DIR, 'ratelimit.json'), '{{{');
  const s = await takeDumpSlot({ spoolDir: dir, key: 'k', maxDumps: 1, windowMs: 1000 });
  t.equal(s.allowed, true);
  t.match(s.stateProblem, /unreadable .*: reset/);
  t.match(JSON.parse(await readFile(join(dir, RATE_STATE_DIR, 'ratelimit.json'), 'utf8')), {
    version: 1,
    keys: { k: [Number] },
  });
});

t.test(
  'a lock left by a dead handler is broken once stale; a live one makes the caller wait, then fail',
  async (t) => {
    const dir = await spool(t);
    await mkdir(join(dir, RATE_STATE_DIR));
    const lock = join(dir, RATE_STATE_DIR, 'ratelimit.lock');
    await writeFile(lock, '1 dead');
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    t.match(await takeDumpSlot({ spoolDir: dir, key: 'k', maxDumps: 1, windowMs: 1000 }), { allowed: true });
    await writeFile(lock, '1 alive');
    await t.rejects(
      takeDumpSlot({
        spoolDir: dir,
        key: 'k',
        maxDumps: 1,
        windowMs: 1000,
        lockTimeoutMs: 200,
        staleLockMs: 60_000,
      }),
      /the rate-limit lock .* stayed taken for 200 ms/,
    );
  },
);

t.test('many takers at once: exactly maxDumps allowed', async (t) => {
  const dir = await spool(t);
  const results = await Promise.all(
    Array.from({ length: 50 }, () =>
      takeDumpSlot({ spoolDir: dir, key: 'k', maxDumps: 7, windowMs: 60_000 }),
    ),
  );
  t.equal(results.filter((r) => r.allowed).length, 7);
});
