// bench:capture — what the core handler costs the crashing process.
//
// 1. Throughput: a 1 GiB synthetic core (an ELF core header and notes, then memory made of 1 MiB
//    blocks: 70 % zero pages, 20 % random bytes, 10 % a repeated 4 KiB pattern of text and
//    pointer-like words, interleaved) piped through the installed handler exactly as the kernel
//    does it (the wrapper, an empty environment, stdin a pipe fed by `cat`), with compression off and
//    on; baseline: `cat core | cat > file` of the same bytes, in the same run. Best of REPEAT runs.
//    The handler also fsyncs its file and hashes (sha256) every byte; the baseline does neither,
//    so a second baseline adds the fsync (`sync -d file`) to show what durability alone costs.
// 2. Peak RSS of the handler (its own getrusage maxRSS, written in its log line).
// 3. Per-crash overhead: the handler run on an empty core (it still reads /proc, writes a skipped
//    meta and a log line) against starting /bin/true and `node -e ''` (the same Node 24 binary).
//
//   npm run bench:capture            (REPEAT=3 SIZE_MIB=1024 EMPTY_RUNS=20 to change)
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { installHandler } from '../collector/src/agent/handler-installer.ts';
import type { HandlerConfig } from '../collector/src/handler-config.ts';
import {
  note,
  prpsinfo,
  prstatus,
  syntheticCoreStream,
  sleepCrashArgs,
} from '../test/support/synthetic-core.ts';

const MIB = 1024 * 1024;
const SIZE_MIB = Number(process.env.SIZE_MIB ?? 1024);
const REPEAT = Number(process.env.REPEAT ?? 2);
const EMPTY_RUNS = Number(process.env.EMPTY_RUNS ?? 20);

const work = await mkdtemp(join(tmpdir(), 'pm-bench-'));
const cleanup = () => rm(work, { recursive: true, force: true });
process.on('SIGINT', () => void cleanup().then(() => process.exit(130)));

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}): Promise<number> {
  const started = performance.now();
  const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`${cmd} ${args.join(' ')} exited ${String(code)}`);
    return performance.now() - started;
  });
}

// The core: one pattern block and one zero block reused; random blocks made fresh each time so
// zstd cannot find them again within its window.
const pattern = Buffer.alloc(MIB);
for (let o = 0; o < MIB; o += 64) {
  pattern.write(`podmortem ${String(o % 4096).padStart(6, '0')} `, o);
  pattern.writeBigUInt64LE(0x7f3bbbd90000n + BigInt(o % 4096), o + 48);
  pattern.writeBigUInt64LE(0x55d0c0a01000n, o + 56);
}
const zero = Buffer.alloc(MIB);
const kinds = ['zero', 'random', 'zero', 'pattern', 'zero', 'random', 'zero', 'zero', 'zero', 'zero'];
const corePath = join(work, 'synthetic.core');
{
  const pid = 4242;
  const { stream } = syntheticCoreStream(
    {
      notes: [
        note('CORE', 1, prstatus({ signal: 11, pid })),
        note('CORE', 3, prpsinfo({ pid, uid: 1000, gid: 1000, comm: 'bench', args: 'bench --big' })),
      ],
      loads: [{ vaddr: 0x7f0000000000n, size: SIZE_MIB * MIB - 4096 }],
      fill: (offset, length) => {
        const kind = kinds[Math.floor(offset / MIB) % kinds.length];
        const src =
          kind === 'random' ? randomFillSync(Buffer.allocUnsafe(MIB)) : kind === 'pattern' ? pattern : zero;
        return src.subarray(0, length);
      },
    },
    MIB,
  );
  await pipeline(stream, createWriteStream(corePath));
}
const coreBytes = (await stat(corePath)).size;

// A process for the handler to read /proc of, as it would the crashing one.
const target = spawn('sleep', ['600'], { stdio: 'ignore' });
await once(target, 'spawn');
const kernelArgs = sleepCrashArgs(target.pid ?? 0);

async function handlerFor(name: string, config: Partial<HandlerConfig>) {
  const spool = join(work, `spool-${name}`);
  const { handlerPath } = await installHandler({
    dir: join(work, `bin-${name}`),
    config: { spoolDir: spool, minFreeBytes: 0, rateLimitDumps: 1_000_000, ...config },
  });
  return { handlerPath, spool };
}

async function lastLogLine(spool: string): Promise<{ maxRssKb: number; handlerMs: number; status: string }> {
  const lines = (await readFile(join(spool, 'handler.log'), 'utf8')).trim().split('\n');
  return JSON.parse(lines.at(-1) ?? '{}') as { maxRssKb: number; handlerMs: number; status: string };
}

async function emptySpool(spool: string) {
  for (const n of await readdir(spool))
    if (n.endsWith('.core.zst') || n.endsWith('.meta.json')) await rm(join(spool, n));
}

interface Row {
  what: string;
  ms: number;
  rssKb?: number;
  storedBytes?: number;
}
const rows: Row[] = [];

// Baselines: the same bytes through a pipe into a file; and the same made durable (fsync), as
// the handler's own file is before it is renamed into place.
const out = join(work, 'cat.out');
for (const [what, script] of [
  ['cat > file (baseline)', 'cat "$1" | cat > "$2"'],
  ['cat > file; fsync (durable)', 'cat "$1" | cat > "$2" && sync -d "$2"'],
] as const) {
  let best = Infinity;
  for (let i = 0; i < REPEAT; i++) {
    best = Math.min(best, await run('/bin/bash', ['-c', script, 'bench', corePath, out]));
    await rm(out);
  }
  rows.push({ what, ms: best, storedBytes: coreBytes });
}

for (const [name, config] of [
  ['handler, compression off', { compression: 'none' }],
  ['handler, zstd level 1', { compression: 'zstd', zstdLevel: 1 }],
  ['handler, zstd level 3 (default)', { compression: 'zstd', zstdLevel: 3 }],
] as const) {
  const { handlerPath, spool } = await handlerFor(name.replace(/\W+/g, '-'), config);
  let row: Row | undefined;
  for (let i = 0; i < REPEAT; i++) {
    const ms = await run('/bin/bash', [
      '-c',
      'cat "$1" | env -i "$2" "${@:3}"',
      'bench',
      corePath,
      handlerPath,
      ...kernelArgs,
    ]);
    const line = await lastLogLine(spool);
    if (line.status !== 'stored') throw new Error(`${name}: the handler says ${JSON.stringify(line)}`);
    const storedBytes = (await readdir(spool)).filter((n) => n.endsWith('.core.zst')).length;
    if (storedBytes !== 1) throw new Error(`${name}: ${storedBytes} cores in the spool`);
    const meta = JSON.parse(
      await readFile(join(spool, (await readdir(spool)).find((n) => n.endsWith('.meta.json')) ?? ''), 'utf8'),
    ) as { dump: { storedBytes: number } };
    if (!row || ms < row.ms)
      row = { what: name, ms, rssKb: line.maxRssKb, storedBytes: meta.dump.storedBytes };
    else row.rssKb = Math.max(row.rssKb ?? 0, line.maxRssKb);
    await emptySpool(spool);
  }
  if (row) rows.push(row);
}

// Per-crash overhead.
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
async function times(cmd: string, args: string[], stdinEmpty = false): Promise<number> {
  const xs: number[] = [];
  for (let i = 0; i < EMPTY_RUNS + 1; i++) {
    const ms = stdinEmpty
      ? await run('/bin/bash', ['-c', 'env -i "$@" </dev/null', 'bench', cmd, ...args])
      : await run(cmd, args);
    if (i > 0) xs.push(ms); // the first warms caches (Node's compile cache for the handler)
  }
  return median(xs);
}
const empty = await handlerFor('empty', {});
const tTrue = await times('/bin/bash', ['-c', 'env -i /bin/true </dev/null']);
const tNode = await times('/bin/bash', ['-c', `env -i ${JSON.stringify(process.execPath)} -e '' </dev/null`]);
const tHandler = await times(empty.handlerPath, kernelArgs, true);
const emptyLine = await lastLogLine(empty.spool);

target.kill('SIGKILL');
await cleanup();

const base = rows[0]?.ms ?? NaN;
const durable = rows[1]?.ms ?? NaN;
const mbs = (ms: number) => coreBytes / MIB / (ms / 1000);
const pad = (s: string, n: number) => s.padEnd(n);
const lpad = (s: string, n: number) => s.padStart(n);
console.log(
  `\nbench:capture — a ${(coreBytes / MIB).toFixed(0)} MiB synthetic core (70% zero, 20% random, 10% repeated pattern), best of ${REPEAT}`,
);
console.log(
  `Node ${process.version}, ${(await readFile('/proc/cpuinfo', 'utf8')).match(/model name\s*:\s*(.*)/)?.[1] ?? ''}\n`,
);
console.log(
  `${pad('pipe → file', 34)}${lpad('seconds', 9)}${lpad('MB/s', 9)}${lpad('vs cat', 9)}${lpad('vs durable', 12)}${lpad('stored MiB', 12)}${lpad('peak RSS MiB', 14)}`,
);
for (const r of rows) {
  console.log(
    `${pad(r.what, 34)}${lpad((r.ms / 1000).toFixed(2), 9)}${lpad(mbs(r.ms).toFixed(0), 9)}${lpad((base / r.ms).toFixed(2) + 'x', 9)}${lpad((durable / r.ms).toFixed(2) + 'x', 12)}${lpad(((r.storedBytes ?? 0) / MIB).toFixed(1), 12)}${lpad(r.rssKb === undefined ? '-' : (r.rssKb / 1024).toFixed(0), 14)}`,
  );
}
console.log(
  `\n('vs cat' = cat's time / this time: 1.00x is as fast as cat > file; 'vs durable' the same against cat > file plus fsync; MB/s in MiB/s)\n`,
);
console.log(`per-crash overhead, empty core, median of ${EMPTY_RUNS} (after one warm-up):`);
console.log(`${pad('  /bin/true', 34)}${lpad(tTrue.toFixed(1), 9)} ms`);
console.log(`${pad("  node -e ''", 34)}${lpad(tNode.toFixed(1), 9)} ms`);
console.log(
  `${pad('  handler (empty core → skipped meta)', 34)}${lpad(tHandler.toFixed(1), 9)} ms   = /bin/true + ${(tHandler - tTrue).toFixed(1)} ms, node -e '' + ${(tHandler - tNode).toFixed(1)} ms; handler's own handlerMs ${emptyLine.handlerMs} ms, peak RSS ${(emptyLine.maxRssKb / 1024).toFixed(0)} MiB`,
);
