import { existsSync, mkdtempSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import { newCrashId } from '@podmortem/contract';
import { createLogger } from '@podmortem/contract/runtime';
import { Spool } from './spool.ts';
import { SpoolWatcher } from './spool-watcher.ts';
import { createTelemetry } from './telemetry.ts';

// The watcher on a real folder, with a delivery that records what it is given.

const logger = createLogger('test', { level: 'silent' });

async function until(what: string, probe: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function setup(
  t: { teardown(fn: () => unknown): void },
  options: { concurrency?: number; maxQueued?: number; sweepIntervalMs?: number; hold?: boolean } = {},
) {
  const spoolDir = mkdtempSync(join(tmpdir(), 'pm-spool-'));
  const spool = new Spool(spoolDir);
  /** Every id handed to delivery, in order: pushed as delivery is called. */
  const handed: string[] = [];
  const delivered: string[] = [];
  let running = 0;
  let maxRunning = 0;
  const release: (() => void)[] = [];
  const signals: AbortSignal[] = [];
  const watcher = new SpoolWatcher({
    spool,
    concurrency: options.concurrency ?? 2,
    maxQueued: options.maxQueued ?? 100,
    sweepIntervalMs: options.sweepIntervalMs ?? 3_600_000,
    orphanAgeMs: 60_000,
    telemetry: createTelemetry(() => spool.usage()),
    logger,
    deliver: async (id, signal) => {
      handed.push(id);
      signals.push(signal);
      running++;
      maxRunning = Math.max(maxRunning, running);
      try {
        // As the real delivery: an entry listed by a sweep just before it went is found gone.
        if (!existsSync(join(spoolDir, `${id}.meta.json`))) return;
        if (options.hold) await new Promise<void>((resolve) => release.push(resolve));
        await rm(join(spoolDir, `${id}.meta.json`));
        delivered.push(id);
      } finally {
        running--;
      }
    },
  });
  t.teardown(async () => {
    for (const r of release) r();
    await watcher.shutdown(Date.now() + 1000);
    rmSync(spoolDir, { recursive: true, force: true });
  });
  const entry = (id = newCrashId()) => {
    writeFileSync(join(spoolDir, `${id}.core.zst`), 'core');
    writeFileSync(join(spoolDir, `${id}.meta.json`), '{}');
    return id;
  };
  return {
    spool,
    spoolDir,
    watcher,
    handed,
    delivered,
    entry,
    release,
    signals,
    maxRunning: () => maxRunning,
  };
}

t.test('entries already there are swept at start, oldest first', async (t) => {
  const s = setup(t, { concurrency: 1 });
  const ids = [newCrashId(Date.now() - 3000), newCrashId(Date.now() - 2000), newCrashId(Date.now() - 1000)];
  for (const id of [...ids].reverse()) s.entry(id);
  await s.watcher.start();
  await until('all delivered', () => s.delivered.length === 3);
  t.same(s.delivered, ids);
});

t.test('a new entry is picked up by its file event, without waiting for a sweep', async (t) => {
  const s = setup(t);
  await s.watcher.start();
  const id = s.entry();
  await until('delivered', () => s.delivered.includes(id));
  t.pass('found by fs.watch (the sweep period is an hour)');
});

t.test('half-written entries, temporary files and other files are not entries', async (t) => {
  const s = setup(t);
  const id = newCrashId();
  writeFileSync(join(s.spoolDir, `${id}.core.zst`), 'core without meta yet');
  writeFileSync(join(s.spoolDir, `.tmp-${id}.meta.json`), '{}');
  writeFileSync(join(s.spoolDir, 'handler.log'), '{}\n');
  writeFileSync(join(s.spoolDir, 'not-a-crash-id.meta.json'), '{}');
  // The files are there before the watch starts, so only a sweep could find them; delivery is
  // called in the same turn as a sweep queues an id, so once sweeps are done, none was.
  await s.watcher.start();
  await s.watcher.sweep();
  t.same(s.handed, [], 'neither the start sweep nor a later one handed anything to delivery');
  t.same(await s.spool.usage(), { entries: 0, bytes: 'core without meta yet'.length + 2 });
});

t.test('no more deliveries at once than the concurrency', async (t) => {
  const s = setup(t, { concurrency: 3, hold: true });
  for (let i = 0; i < 10; i++) s.entry();
  await s.watcher.start();
  await until('three running', () => s.release.length === 3);
  // A sweep queues what is on disk and starts what it may, all before it resolves.
  await s.watcher.sweep();
  t.equal(s.handed.length, 3, 'the others wait');
  t.equal(s.watcher.inFlight, 3);
  while (s.delivered.length < 10) {
    s.release.shift()?.();
    await sleep(5);
  }
  t.equal(s.maxRunning(), 3);
});

t.test('past maxQueued, entries wait on disk for the next sweep', async (t) => {
  const s = setup(t, { concurrency: 1, maxQueued: 2, sweepIntervalMs: 100 });
  for (let i = 0; i < 7; i++) s.entry();
  await s.watcher.start();
  await until('all delivered by later sweeps', () => s.delivered.length === 7);
  t.equal(new Set(s.delivered).size, 7, 'each once');
});

t.test(
  'the remains of killed handlers, killed agents and delivered entries are removed, not fresh files',
  async (t) => {
    const s = setup(t);
    const old = newCrashId();
    const fresh = newCrashId();
    const delivered = newCrashId();
    const oldCore = join(s.spoolDir, `${old}.core.zst`);
    writeFileSync(oldCore, 'x');
    const hourAgo = new Date(Date.now() - 3_600_000);
    utimesSync(oldCore, hourAgo, hourAgo);
    const oldTmp = join(s.spoolDir, `.tmp-${old}.meta.json`);
    writeFileSync(oldTmp, 'x');
    utimesSync(oldTmp, hourAgo, hourAgo);
    // The agent's own temporaries of its state: today's durable-write name and the one before.
    const oldStateTmps = [`.tmp-0123456789ab-${old}.agent.json`, `${old}.agent.json.1a2b3c4d.tmp`].map((n) =>
      join(s.spoolDir, n),
    );
    for (const path of oldStateTmps) {
      writeFileSync(path, '{}');
      utimesSync(path, hourAgo, hourAgo);
    }
    // Left by an agent killed while writing it, however fresh: no other agent writes this spool.
    const killedStateTmp = join(s.spoolDir, `.tmp-0123456789ab-${fresh}.agent.json`);
    writeFileSync(killedStateTmp, '{}');
    writeFileSync(join(s.spoolDir, `${fresh}.core.zst`), 'x');
    // A delivered entry whose removal was cut short after its meta: its core goes with its state.
    writeFileSync(join(s.spoolDir, `${delivered}.agent.json`), '{}');
    const deliveredCore = join(s.spoolDir, `${delivered}.core.zst`);
    writeFileSync(deliveredCore, 'x');
    writeFileSync(join(s.spoolDir, 'handler.log'), 'x');
    await s.watcher.start();
    t.notOk(existsSync(killedStateTmp), 'a temporary agent state of the killed agent, removed at start');
    const freshStateTmp = join(s.spoolDir, `.tmp-0123456789ab-${fresh}.agent.json`);
    writeFileSync(freshStateTmp, '{}');
    await s.watcher.sweep();
    t.notOk(existsSync(oldCore), 'an old core without its meta');
    t.notOk(existsSync(oldTmp), 'an old temporary file');
    for (const path of oldStateTmps) t.notOk(existsSync(path), `an old temporary agent state ${path}`);
    t.ok(existsSync(freshStateTmp), 'a temporary agent state still being written');
    t.notOk(existsSync(join(s.spoolDir, `${delivered}.agent.json`)), 'agent state of an entry gone');
    t.notOk(existsSync(deliveredCore), 'the core of a delivered entry, however fresh');
    t.ok(existsSync(join(s.spoolDir, `${fresh}.core.zst`)), 'a core whose meta may still come');
    t.ok(existsSync(join(s.spoolDir, 'handler.log')), "the handler's own files");
  },
);

t.test('shutdown aborts deliveries waiting to retry, and is safe twice and before start', async (t) => {
  const s = setup(t, { hold: true });
  await s.watcher.shutdown(Date.now() + 100);
  s.entry();
  await s.watcher.start();
  await until('running', () => s.signals.length === 1);
  await s.watcher.shutdown(Date.now() + 200);
  t.ok(s.signals[0]?.aborted, 'the delivery was told to stop');
  await s.watcher.shutdown(Date.now() + 100);
});
