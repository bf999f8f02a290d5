// bench:modules — what recording the crashed process's modules adds to the core handler.
//
// The installed handler run as the kernel runs it (the wrapper, an empty environment), on an empty
// core (so the figure is the modules' part, not the core's), against a live process whose /proc it
// reads as it would the crashing one's: a small C program mapping its executable, libc and ld.so.
// Three handlers differing only in configuration, in alternating rounds (off, hit, miss, off, …):
//   off   moduleCapture 'off': no modules (the handler as it was before module capture)
//   hit   every build id already in the node cache: the maps read and each build id read only
//   miss  the node cache emptied before each run: every module copied (fsync, rename)
// Medians of the wall time of the handler process and of the handler's own modules.ms (its log).
//
//   node bench/modules.ts            (ROUNDS=30 to change)
import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { installHandler } from '../collector/src/agent/handler-installer.ts';
import type { HandlerConfig } from '../collector/src/handler-config.ts';
import { sleepCrashArgs } from '../test/support/synthetic-core.ts';

const ROUNDS = Number(process.env.ROUNDS ?? 30);
if ((process.getuid?.() ?? 1) !== 0)
  throw new Error('bench:modules reads /proc/<pid>/map_files: run as root');

const work = await mkdtemp(join(tmpdir(), 'pm-bench-modules-'));
process.on('SIGINT', () => void rm(work, { recursive: true, force: true }).then(() => process.exit(130)));

await writeFile(join(work, 'p.c'), '#include <unistd.h>\nint main(void) { pause(); return 0; }\n');
const program = join(work, 'pauser');
execFileSync('gcc', ['-O0', '-o', program, join(work, 'p.c')]);
const target = spawn(program, { stdio: 'ignore' });
await once(target, 'spawn');
// The kernel's arguments for this process: its comm and executable, as the handler checks them.
const kernelArgs = sleepCrashArgs(target.pid ?? 0).map((a, i) =>
  i === 7 ? 'pauser' : i === 8 ? program.replaceAll('/', '!') : a,
);

async function handlerFor(name: string, config: Partial<HandlerConfig>) {
  const spool = join(work, `spool-${name}`);
  const { handlerPath } = await installHandler({
    dir: join(work, `bin-${name}`),
    config: { spoolDir: spool, minFreeBytes: 0, ...config },
  });
  return { name, handlerPath, spool };
}

function run(handlerPath: string): Promise<number> {
  const started = performance.now();
  const child = spawn('/bin/bash', ['-c', 'env -i "$@" </dev/null', 'bench', handlerPath, ...kernelArgs], {
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return once(child, 'exit').then(([code]) => {
    if (code !== 0) throw new Error(`the handler exited ${String(code)}`);
    return performance.now() - started;
  });
}

interface Line {
  handlerMs: number;
  modules?: { modules: number; copied: number; cached: number; copiedBytes: number; ms: number };
}
async function lastLine(spool: string): Promise<Line> {
  const lines = (await readFile(join(spool, 'handler.log'), 'utf8')).trim().split('\n');
  return JSON.parse(lines.at(-1) ?? '{}') as Line;
}
async function emptySpool(spool: string) {
  for (const n of await readdir(spool)) if (n.endsWith('.meta.json')) await rm(join(spool, n));
}

const handlers = [
  await handlerFor('off', { moduleCapture: 'off' }),
  await handlerFor('hit', {}),
  await handlerFor('miss', {}),
];
const wall: Record<string, number[]> = { off: [], hit: [], miss: [] };
const own: Record<string, number[]> = { off: [], hit: [], miss: [] };
let copiedBytes = 0;
let moduleCount = 0;
for (let round = 0; round <= ROUNDS; round++) {
  for (const h of handlers) {
    if (h.name === 'miss') await rm(join(h.spool, 'modules'), { recursive: true, force: true });
    const ms = await run(h.handlerPath);
    const line = await lastLine(h.spool);
    await emptySpool(h.spool);
    if (h.name === 'hit' && round > 0 && line.modules?.copied !== 0)
      throw new Error(`hit: the handler copied ${JSON.stringify(line.modules)}`);
    if (h.name === 'miss' && line.modules?.cached !== 0)
      throw new Error(`miss: the handler found ${JSON.stringify(line.modules)} cached`);
    if (h.name === 'miss') {
      copiedBytes = line.modules?.copiedBytes ?? 0;
      moduleCount = line.modules?.modules ?? 0;
    }
    // Round 0 warms Node's compile cache and, for 'hit', fills the node cache.
    if (round === 0) continue;
    wall[h.name]?.push(ms);
    own[h.name]?.push(line.modules?.ms ?? 0);
  }
}
target.kill('SIGKILL');
const cacheFiles = (await readdir(join(work, 'spool-hit', 'modules'))).length;
const cacheBytes = (
  await Promise.all(
    (await readdir(join(work, 'spool-hit', 'modules'))).map((n) =>
      stat(join(work, 'spool-hit', 'modules', n)),
    ),
  )
).reduce((s, x) => s + x.size, 0);
await rm(work, { recursive: true, force: true });

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
const off = median(wall.off ?? []);
console.log(
  `\nbench:modules — handler on an empty core of a live process with ${moduleCount} ELF modules (${(copiedBytes / 1024 / 1024).toFixed(2)} MiB), median of ${ROUNDS} alternating rounds`,
);
console.log(`Node ${process.version}; the hit cache: ${cacheFiles} files, ${cacheBytes} bytes\n`);
console.log(
  `${'handler'.padEnd(34)}${'wall ms'.padStart(9)}${'vs off'.padStart(10)}${'modules.ms'.padStart(12)}`,
);
for (const [name, what] of [
  ['off', 'modules off (baseline)'],
  ['hit', 'modules on, cache hit'],
  ['miss', 'modules on, cache miss (copies)'],
] as const) {
  const w = median(wall[name] ?? []);
  const delta = name === 'off' ? '' : `${w - off >= 0 ? '+' : ''}${(w - off).toFixed(1)}`;
  console.log(
    `${what.padEnd(34)}${w.toFixed(1).padStart(9)}${delta.padStart(10)}${(name === 'off' ? '-' : median(own[name] ?? []).toFixed(1)).padStart(12)}`,
  );
}
console.log(`\n(modules.ms: the handler's own time in module capture, from its log line)`);
