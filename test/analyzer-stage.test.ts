import { chmod, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import t, { type Test } from 'tap';
import { FsStore } from '@podmortem/contract/store';
import type { CrashEvent } from '@podmortem/contract';
import { crashSignature } from '../analyzer/src/signature.ts';
import { unwindCore } from '../analyzer/src/unwinder.ts';
import {
  analyzerNames,
  crashEventFor,
  produceCrashes,
  readAnalyses,
  startAnalyzer,
  stopAnalyzer,
  storeDump,
  storeModule,
  testKafka,
  type AnalysisRecord,
  type AnalyzerNames,
  type AnalyzerProcess,
} from './support/analyzer-harness.ts';
import { metricValue } from './support/metrics.ts';
import { until } from './support/poll.ts';
import { buildIdOf, buildPrograms, crashAll, lineOf } from './support/real-crash.ts';
import { createTopicsWithLeaders } from './support/kafka-topics.ts';

// The analyzer as its own stage, against the real Kafka, a real storage root and real kernel
// cores: crash events in, analysis records out on the analysis topic, one per crash, with the
// crashing function and source line, the signature and a status; every bad input a `failed`
// analysis with its reason while the analyzer keeps going; a SIGKILL mid-stream costs no crash its
// analysis; SIGTERM during a hanging unwind stops cleanly and leaves no unwinder behind.

const segvSource = `#include <stddef.h>
struct hdr { int len; };
int parse_header(const struct hdr *h) {
  return h->len; /* CRASH */
}
int main(int argc, char **argv) {
  (void)argv;
  return parse_header(argc > 5 ? (const struct hdr *)argv : NULL);
}
`;

const dir = await mkdtemp(join(tmpdir(), 'pm-an-stage-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const storageRoot = await mkdtemp(join(dir, 'storage-'));
const workDir = await mkdtemp(join(dir, 'work-'));
const store = new FsStore({ root: storageRoot });

const exes = await buildPrograms(dir, { segv: { source: segvSource } });
const exe = exes.segv ?? '';
const crash = (await crashAll(dir, { segv: { exe } })).segv;
if (!crash) throw new Error('no crash');
const core = await readFile(crash.core);
const buildId = (await buildIdOf(exe)) ?? '';
await storeModule(store, buildId, exe);

// What eu-stack says of the same core by hand, for the expected signature.
const direct = await unwindCore({ core: crash.core, executable: exe });
if (!direct.ok) throw new Error(`unwind failed: ${direct.message}`);
const expected = crashSignature('SIGSEGV', direct.threads[0]?.frames ?? []);
const crashLine = lineOf(segvSource, 'CRASH');

/** A crash of the segv program with its dump in the store (the given bytes, zstd-compressed). */
async function storedCrash(dump: Buffer = core, spec: Partial<Parameters<typeof crashEventFor>[0]> = {}) {
  const event = crashEventFor({ executable: exe, pid: crash?.pid ?? 1, buildId, ...spec });
  await storeDump(store, event, dump);
  return event;
}

const kafka = testKafka();
const admin = kafka.admin();
await admin.connect();
t.teardown(() => admin.disconnect());

async function topicsFor(t: Test, names: AnalyzerNames): Promise<void> {
  await createTopicsWithLeaders(admin, [
    { topic: names.topic, numPartitions: 2 },
    { topic: names.analysisTopic, numPartitions: 2 },
    { topic: names.requestTopic, numPartitions: 2 },
  ]);
  t.teardown(() =>
    admin
      .deleteTopics({ topics: [names.topic, names.analysisTopic, names.requestTopic] })
      .catch(() => undefined),
  );
}

async function analyzer(t: Test, names: AnalyzerNames, env: Record<string, string> = {}) {
  const p = await startAnalyzer({ names, storageRoot, workDir, env });
  t.teardown(() => stopAnalyzer(p));
  return p;
}

async function reader(t: Test, names: AnalyzerNames) {
  const r = await readAnalyses(kafka, names.analysisTopic);
  t.teardown(r.stop);
  return r.records;
}

/** The analyses of `events`, once each has at least one; by crash id. */
async function analysesOf(records: AnalysisRecord[], events: CrashEvent[], p?: AnalyzerProcess) {
  const ids = new Set(events.map((e) => e.crash.id));
  await until(
    `an analysis of each of ${ids.size} crashes${p ? `; logs: ${p.logs.slice(-5).join('\n')}` : ''}`,
    () => new Set(records.filter((r) => ids.has(r.crashId)).map((r) => r.crashId)).size === ids.size,
  );
  return new Map(records.filter((r) => ids.has(r.crashId)).map((r) => [r.crashId, r]));
}

const workDirEmpty = async () => (await readdir(workDir)).length === 0;

t.test('crashes in, one analysis each out: function, file:line, signature, status, key', async (t) => {
  const names = analyzerNames('pm-an-ok');
  await topicsFor(t, names);
  const records = await reader(t, names);
  const p = await analyzer(t, names);
  const ok = await storedCrash();
  const noDump = crashEventFor({
    executable: exe,
    pid: crash.pid,
    buildId,
    dump: { status: 'skipped', reason: 'rate limited' },
  });
  // A skipped dump whose notes gave the pc: where the real core says the crash was.
  const fromEvent = crashEventFor({
    executable: exe,
    pid: crash.pid,
    buildId,
    dump: { status: 'skipped', reason: 'namespace quota' },
  });
  const top = direct.threads[0]?.frames[0];
  const start = BigInt(top?.pc ?? 0) - BigInt(top?.offset ?? 0);
  fromEvent.registers = { pc: top?.pc ?? '0x0', sp: '0x7ffd00001000' };
  fromEvent.analysis = {
    modules: [
      {
        path: exe,
        build_id: buildId,
        start: `0x${start.toString(16)}`,
        end: `0x${(start + 0x5000n).toString(16)}`,
      },
    ],
  };
  await produceCrashes(kafka, names.topic, [ok, noDump, fromEvent]);
  const got = await analysesOf(records, [ok, noDump, fromEvent], p);

  const a = got.get(ok.crash.id);
  t.equal(a?.key, `${ok.kubernetes?.namespace}/${ok.kubernetes?.pod.uid}`, 'keyed like the crash');
  t.match(a?.analysis.analysis, {
    status: 'ok',
    signature: expected.signature,
    title: `SIGSEGV in parse_header (segv.c:${crashLine})`,
    frames: [
      {
        function: 'parse_header',
        module: 'segv',
        build_id: buildId,
        file: join(dir, 'segv.c'),
        line: crashLine,
      },
      { function: 'main' },
    ],
  });
  t.equal(a?.analysis.analysis.reason, undefined, 'an ok analysis has no reason');
  t.equal(a?.analysis.analysis.threads?.length, 1, 'every thread');

  t.match(got.get(noDump.crash.id)?.analysis.analysis, {
    status: 'skipped',
    reason: /^no-dump: no dump \(skipped: rate limited\)/,
  });
  const partial = got.get(fromEvent.crash.id)?.analysis.analysis;
  t.match(partial, {
    status: 'partial',
    reason:
      /^no-dump: no dump \(skipped: namespace quota\): the top frame from the pc and the module map only$/,
    title: `SIGSEGV in parse_header (segv.c:${crashLine})`,
  });
  t.same(
    partial?.frames,
    [
      {
        module: 'segv',
        function: 'parse_header',
        offset: top?.offset,
        build_id: buildId,
        file: join(dir, 'segv.c'),
        line: crashLine,
        column: top?.column,
      },
    ],
    'the top frame named from the stored executable',
  );
  t.equal(partial?.signature, undefined, 'one frame is no stack: no signature');

  t.ok(await until('/readyz to answer 200', () => p.ready()), 'ready in the group');
  t.equal((await fetch(`${p.opsUrl}/healthz`)).status, 200, 'healthy');
  const metrics = await p.metrics();
  t.equal(metricValue(metrics, 'podmortem_analyzer_crashes_analysed_total', { status: 'ok' }), 1);
  t.equal(metricValue(metrics, 'podmortem_analyzer_crashes_analysed_total', { status: 'skipped' }), 1);
  t.equal(metricValue(metrics, 'podmortem_analyzer_crashes_analysed_total', { status: 'partial' }), 1);
  t.ok(await until('no temporary file left', workDirEmpty));
});

t.test('a bad configuration value: exit 2 naming the variable, nothing started', async (t) => {
  const p = await startAnalyzer({
    names: analyzerNames('pm-an-config'),
    storageRoot,
    workDir,
    env: { PODMORTEM_ANALYZER_MAX_TEMP_BYTES: 'lots' },
  });
  t.same(await p.exited, { code: 2, signal: null });
  t.same(p.logs, [
    'podmortem-analyzer: configuration: PODMORTEM_ANALYZER_MAX_TEMP_BYTES: must be a number, got "lots"',
  ]);
});

t.test('bad input: each a failed analysis with its reason, and the analyzer keeps going', async (t) => {
  const names = analyzerNames('pm-an-bad');
  await topicsFor(t, names);
  const records = await reader(t, names);
  const p = await analyzer(t, names);
  const garbage = await storedCrash(randomBytes(64 * 1024));
  const truncated = await storedCrash(core.subarray(0, 4096));
  const missingExe = await storedCrash(core, { buildId: 'deadbeef'.repeat(5) });
  const noBuildId = await storedCrash(core, { buildId: undefined });
  const corrupt = crashEventFor({ executable: exe, pid: crash.pid, buildId });
  await store.putBytes(corrupt.dump.path ?? '', randomBytes(1000));
  const cutByLimit = await storedCrash(core, { dump: { status: 'truncated', reason: 'size limit' } });
  const good = await storedCrash();
  const events = [garbage, truncated, missingExe, noBuildId, corrupt, cutByLimit, good];
  await produceCrashes(kafka, names.topic, events);
  const got = await analysesOf(records, events, p);
  const of = (e: CrashEvent) => got.get(e.crash.id)?.analysis.analysis;
  t.match(of(garbage), { status: 'failed', reason: /^not-a-core: .*no ELF header/ });
  t.match(of(truncated), { status: 'failed', reason: /^unwinder-error: / });
  t.match(of(missingExe), {
    status: 'failed',
    reason: /^executable-missing: _buildid\/deadbeef.*not in the store/,
  });
  t.match(of(noBuildId), {
    status: 'failed',
    reason: /^executable-missing: the crash event names no executable/,
  });
  t.match(of(corrupt), { status: 'failed', reason: /^dump-corrupt: / });
  t.match(of(cutByLimit), {
    status: 'partial',
    reason: 'partial: the dump is truncated',
    signature: expected.signature,
  });
  t.match(of(good), { status: 'ok', signature: expected.signature });
  t.ok(p.alive(), 'still running');
  const metrics = await p.metrics();
  t.equal(metricValue(metrics, 'podmortem_analyzer_failures_total', { reason: 'executable-missing' }), 2);
  t.equal(metricValue(metrics, 'podmortem_analyzer_failures_total', { reason: 'not-a-core' }), 1);
  t.ok(await until('no temporary file left', workDirEmpty));
});

t.test('a crash over the temporary-disk limit is skipped with the reason', async (t) => {
  const names = analyzerNames('pm-an-limit');
  await topicsFor(t, names);
  const records = await reader(t, names);
  const p = await analyzer(t, names, { PODMORTEM_ANALYZER_MAX_TEMP_BYTES: String(1024 * 1024) });
  const big = await storedCrash(Buffer.concat([core, Buffer.alloc(2 * 1024 * 1024)]));
  await produceCrashes(kafka, names.topic, [big]);
  const got = await analysesOf(records, [big], p);
  t.match(got.get(big.crash.id)?.analysis.analysis, {
    status: 'skipped',
    reason: /^temp-limit: .*1048576 bytes/,
  });
  t.ok(await until('no temporary file left', workDirEmpty));
});

/** A stand-in for eu-stack that hangs, writing the pid of its child to `pidFile`. */
async function hangingUnwinder(pidFile: string): Promise<string> {
  const path = join(dir, 'hanging-unwinder');
  await writeFile(path, `#!/bin/bash\nsleep 600 & echo $! > ${pidFile}\nwait\n`);
  await chmod(path, 0o755);
  return path;
}

async function gone(pid: number): Promise<boolean> {
  try {
    const statLine = await readFile(`/proc/${pid}/stat`, 'utf8');
    return statLine.slice(statLine.lastIndexOf(')') + 2).startsWith('Z');
  } catch {
    return true;
  }
}

t.test('an unwinder that hangs: failed with the timeout, the next crash analysed too', async (t) => {
  const names = analyzerNames('pm-an-hang');
  await topicsFor(t, names);
  const records = await reader(t, names);
  const command = await hangingUnwinder(join(dir, 'hang.pid'));
  const p = await analyzer(t, names, {
    PODMORTEM_ANALYZER_UNWINDER_COMMAND: command,
    PODMORTEM_ANALYZER_UNWIND_DEADLINE_MS: '1000',
  });
  const first = await storedCrash();
  const second = await storedCrash();
  await produceCrashes(kafka, names.topic, [first, second]);
  const got = await analysesOf(records, [first, second], p);
  for (const e of [first, second])
    t.match(got.get(e.crash.id)?.analysis.analysis, {
      status: 'failed',
      reason: /^timeout: no result within 1000 ms/,
    });
  t.ok(p.alive(), 'still running');
  t.equal(metricValue(await p.metrics(), 'podmortem_analyzer_failures_total', { reason: 'timeout' }), 2);
});

t.test(
  'SIGTERM during a hanging unwind: exit 0, the unwinder killed, the crash left uncommitted',
  async (t) => {
    const names = analyzerNames('pm-an-term');
    await topicsFor(t, names);
    const pidFile = join(dir, 'term.pid');
    const command = await hangingUnwinder(pidFile);
    const p = await analyzer(t, names, { PODMORTEM_ANALYZER_UNWINDER_COMMAND: command });
    const event = await storedCrash();
    await produceCrashes(kafka, names.topic, [event]);
    const sleeper = await until('the unwinder to start', async () => {
      const text = await readFile(pidFile, 'utf8').catch(() => '');
      return text.trim() === '' ? undefined : Number(text);
    });
    p.child.kill('SIGTERM');
    t.same(await p.exited, { code: 0, signal: null }, 'a clean exit');
    await until(`the unwinder's child ${sleeper} to be gone`, () => gone(sleeper), 10_000);
    t.pass('the unwinder is gone with the analyzer');
    const [offsets] = await admin.fetchOffsets({ groupId: names.group, topics: [names.topic] });
    t.ok(
      offsets?.partitions.every((o) => o.offset === '-1'),
      'nothing committed',
    );
    t.ok(await until('no temporary file left', workDirEmpty));
  },
);

t.test('SIGKILL mid-stream: every crash gets its analysis after a restart', async (t) => {
  const names = analyzerNames('pm-an-kill');
  await topicsFor(t, names);
  const records = await reader(t, names);
  const events: CrashEvent[] = [];
  for (let i = 0; i < 16; i++) events.push(await storedCrash());
  await produceCrashes(kafka, names.topic, events);
  const first = await analyzer(t, names);
  await until('the first analysis', () => records.length > 0);
  first.child.kill('SIGKILL');
  await first.exited;
  const second = await analyzer(t, names);
  const got = await analysesOf(records, events, second);
  t.equal(got.size, events.length, 'every crash analysed');
  t.ok(
    [...got.values()].every(
      (r) => r.analysis.analysis.status === 'ok' && r.analysis.analysis.signature === expected.signature,
    ),
  );
  // A crash analysed before the kill and again after it has two records with the same crash id
  // and key, the same in everything but analyzed_at; the indexer keeps the newest.
  const ids = records.map((r) => r.crashId);
  t.comment(`${ids.length} records for ${events.length} crashes (${ids.length - events.length} duplicates)`);
  t.same(new Set(ids), new Set(events.map((e) => e.crash.id)), 'no record of anything else');
  // The killed analyzer's temporary folder, if it was mid-crash, is removed by the next one.
  t.ok(await until('no temporary file left', workDirEmpty));
});
