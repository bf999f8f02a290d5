import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { promisify } from 'node:util';
import { zstdCompressSync } from 'node:zlib';
import { dumpRelPath } from '@podmortem/contract';
import { FsStore } from '@podmortem/contract/store';
import { analyzeCrash } from '../analyzer/src/crash-analysis.ts';
import { createTelemetry } from '../analyzer/src/telemetry.ts';
import { UNWINDER_DEFAULTS } from '../analyzer/src/unwinder.ts';
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
  type AnalyzerProcess,
} from '../test/support/analyzer-harness.ts';
import { until } from '../test/support/poll.ts';
import { buildIdOf, buildPrograms, crashAll } from '../test/support/real-crash.ts';
import { createTopicsWithLeaders } from '../test/support/kafka-topics.ts';

// bench:analyze — the analysis of one crash, in process (the dump read from a real storage root
// and decompressed into a temporary folder, the executable laid out, eu-stack under prlimit,
// parsing, signature), against the baseline of `eu-stack` run by hand on the same raw core in the
// same run; rounds alternate and medians are compared, so a busy machine weighs on both alike.
// Twice: the small core of a NULL dereference, and a core of about 1 GiB (a program that fills
// BENCH_BIG_MIB of heap first). Then the throughput of the stage: BENCH_CRASHES small crashes
// produced to Kafka and analysed by 1, then 2, analyzer processes (each waited ready first), timed
// from the first send until every analysis record is on the analysis topic.
//
//   npm run bench:analyze                         15 + 3 rounds, 60 crashes
//   BENCH_ROUNDS=31 BENCH_BIG_ROUNDS=5 BENCH_CRASHES=200 npm run bench:analyze
//   BENCH_BIG_MIB=0 npm run bench:analyze         without the big core

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 15);
const CRASHES = Number(process.env.BENCH_CRASHES ?? 60);
/** Heap the big program fills before it crashes (MiB), and the rounds of its comparison. */
const BIG_MIB = Number(process.env.BENCH_BIG_MIB ?? 1024);
const BIG_ROUNDS = Number(process.env.BENCH_BIG_ROUNDS ?? 3);
const run = promisify(execFile);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? 0;
const mib = (bytes: number) => `${(bytes / 1024 ** 2).toFixed(1)} MiB`;

// The big program's heap is a byte of xorshift noise every 4 bytes, zeros between: a core that
// compresses to about a third, as heaps of real programs roughly do, so neither zstd nor the
// unwinder is measured on an all-zero core.
const BIG_SOURCE = `#include <stdint.h>
#include <stdlib.h>
static void fill(unsigned char *p, size_t n) {
  uint64_t x = 88172645463325252ull;
  for (size_t i = 0; i < n; i += 4) { x ^= x << 13; x ^= x >> 7; x ^= x << 17; p[i] = (unsigned char)x; }
}
int parse_big(const int *h) { return *h; }
int main(int argc, char **argv) {
  size_t n = (size_t)strtoull(argc > 1 ? argv[1] : "1", 0, 10) << 20;
  unsigned char *p = calloc(n, 1);
  if (!p) return 2;
  fill(p, n);
  return parse_big(argc > 5 ? (const int *)p : 0) + p[n - 1];
}
`;

const dir = await mkdtemp(join(tmpdir(), 'pm-bench-analyze-'));
try {
  const storageRoot = await mkdtemp(join(dir, 'storage-'));
  const workDir = await mkdtemp(join(dir, 'work-'));
  const store = new FsStore({ root: storageRoot });
  const exes = await buildPrograms(dir, {
    segv: {
      source:
        'struct hdr { int len; };\nint parse_header(const struct hdr *h) { return h->len; }\nint main(int argc, char **argv) { (void)argv; return parse_header(argc > 5 ? (const struct hdr *)argv : 0); }\n',
    },
    big: { source: BIG_SOURCE },
  });
  const telemetry = createTelemetry(undefined, false);
  const signal = new AbortController().signal;

  /**
   * Alternating rounds on one real core: the analysis as the analyzer runs it (the dump read
   * from the store and decompressed into a temporary folder, the executable laid out, eu-stack
   * under prlimit, parsing, signature), then eu-stack by hand on the raw core.
   */
  const compare = async (label: string, exe: string, args: string[], rounds: number) => {
    const crash = (await crashAll(dir, { [label]: { exe, args } }))[label];
    if (!crash) throw new Error(`no ${label} crash`);
    const core = await readFile(crash.core);
    const compressed = zstdCompressSync(core);
    const buildId = (await buildIdOf(exe)) ?? '';
    await storeModule(store, buildId, exe);
    const analyzerRuns: number[] = [];
    const handRuns: number[] = [];
    for (let round = 0; round < rounds; round++) {
      const event = crashEventFor({ executable: exe, pid: crash.pid, buildId });
      await store.putBytes(dumpRelPath(event), compressed);
      let started = performance.now();
      const { analysis } = await analyzeCrash(event, {
        store,
        telemetry,
        version: 'bench',
        workDir,
        maxTempBytes: 4 * 1024 ** 3,
        unwinder: {},
        signal,
      });
      analyzerRuns.push(performance.now() - started);
      if (analysis.status !== 'ok') throw new Error(`analysis ${analysis.status}: ${analysis.reason}`);
      await store.delete(dumpRelPath(event));
      started = performance.now();
      await run(UNWINDER_DEFAULTS.command, [
        '-b',
        '-m',
        '-s',
        '-i',
        '-n',
        '256',
        `--executable=${exe}`,
        `--core=${crash.core}`,
      ]);
      handRuns.push(performance.now() - started);
      process.stderr.write(`${label}: round ${round + 1}/${rounds} done\n`);
    }
    const analyzerMs = median(analyzerRuns);
    const handMs = median(handRuns);
    console.log(
      `${label} core: ${mib(core.length)} raw, ${mib(compressed.length)} stored; ${rounds} alternating rounds, medians`,
    );
    console.log(`  analysis per crash (store → temp → eu-stack → signature): ${analyzerMs.toFixed(1)} ms`);
    console.log(`  eu-stack by hand on the same raw core:                     ${handMs.toFixed(1)} ms`);
    console.log(`  ratio analyzer / eu-stack: ${(analyzerMs / handMs).toFixed(2)}`);
    await rm(crash.core, { force: true });
    return { crash, core, buildId };
  };

  const small = await compare('small', exes.segv ?? '', [], ROUNDS);
  if (BIG_MIB > 0) await compare('big', exes.big ?? '', [String(BIG_MIB)], BIG_ROUNDS);
  const exe = exes.segv ?? '';
  const newCrash = async () => {
    const event = crashEventFor({ executable: exe, pid: small.crash.pid, buildId: small.buildId });
    await storeDump(store, event, small.core);
    return event;
  };

  const kafka = testKafka();
  const admin = kafka.admin();
  await admin.connect();
  try {
    for (const instances of [1, 2]) {
      const names = analyzerNames(`pm-bench-an${instances}`);
      await createTopicsWithLeaders(admin, [
        { topic: names.topic, numPartitions: 4 },
        { topic: names.analysisTopic, numPartitions: 4 },
        { topic: names.requestTopic, numPartitions: 4 },
      ]);
      const analyzers: AnalyzerProcess[] = [];
      const reader = await readAnalyses(kafka, names.analysisTopic);
      try {
        for (let i = 0; i < instances; i++)
          analyzers.push(await startAnalyzer({ names, storageRoot, workDir }));
        await until('the analyzers to be ready', async () =>
          (await Promise.all(analyzers.map((a) => a.ready()))).every(Boolean),
        );
        const events = [];
        for (let i = 0; i < CRASHES; i++) events.push(await newCrash());
        const started = performance.now();
        await produceCrashes(kafka, names.topic, events);
        await until(
          `${CRASHES} analyses`,
          () => new Set(reader.records.map((r) => r.crashId)).size >= CRASHES,
          600_000,
          20,
        );
        const seconds = (performance.now() - started) / 1000;
        console.log(
          `${instances} analyzer instance(s): ${CRASHES} crashes in ${seconds.toFixed(1)} s = ${(CRASHES / seconds).toFixed(1)} crashes/s`,
        );
      } finally {
        await reader.stop();
        for (const a of analyzers) await stopAnalyzer(a);
        await admin
          .deleteTopics({ topics: [names.topic, names.analysisTopic, names.requestTopic] })
          .catch(() => undefined);
      }
    }
  } finally {
    await admin.disconnect();
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
