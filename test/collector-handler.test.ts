import { execFileSync, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { text } from 'node:stream/consumers';
import { zstdDecompressSync } from 'node:zlib';
import t from 'tap';
import { readCoreNotes } from '../collector/src/agent/elf-notes.ts';
import type { HandlerConfig } from '../collector/src/handler-config.ts';
import { installHandler } from '../collector/src/agent/handler-installer.ts';
import { Spool } from '../collector/src/agent/spool.ts';
import { spoolFiles, type SpoolMeta } from '../collector/src/spool-entry.ts';
import { createPodCgroup } from './support/pod-cgroup.ts';
import { elfHead, note, prpsinfo, prstatus, syntheticCore } from './support/synthetic-core.ts';
import { until } from './support/poll.ts';

// The handler process as the kernel runs it: the installed wrapper, an empty environment, the core
// on stdin through a pipe, the core_pattern arguments. No kernel crash here (that is in
// collector-handler-kernel.test.ts), so every case can be set up exactly.

interface Setup {
  dir: string;
  spool: string;
  handler: string;
}

async function setup(t: Tap, config: Partial<HandlerConfig> = {}): Promise<Setup> {
  const dir = await mkdtemp(join(tmpdir(), 'pmh-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const spool = join(dir, 'spool');
  const { handlerPath } = await installHandler({
    dir: join(dir, 'bin'),
    config: { spoolDir: spool, minFreeBytes: 0, ...config },
  });
  return { dir, spool, handler: handlerPath };
}
type Tap = { teardown: (fn: () => unknown) => void };

/** The core_pattern arguments for a process (%P %p %I %i %s %t %c %e %E %h %u %g). */
function kernelArgs(pid: number, comm: string, exe: string, signal = 11): string[] {
  const id = String(pid);
  const now = String(Math.floor(Date.now() / 1000));
  return [
    id,
    id,
    id,
    id,
    String(signal),
    now,
    '18446744073709551615',
    comm,
    exe.replaceAll('/', '!'),
    'host',
    '0',
    '0',
  ];
}

/** Runs the handler like the kernel: empty environment, stdin a pipe fed `input`. Resolves its exit code. */
async function runHandler(
  handler: string,
  args: string[],
  input: Buffer | Readable | 'hang',
): Promise<number> {
  const child = spawn(handler, args, { env: {}, stdio: ['pipe', 'ignore', 'ignore'] });
  child.stdin.on('error', () => undefined); // the handler may stop reading (deadline) before we stop writing
  if (input === 'hang') child.stdin.write(Buffer.alloc(100_000, 7));
  else if (Buffer.isBuffer(input)) child.stdin.end(input);
  else input.pipe(child.stdin);
  const [code] = (await once(child, 'exit')) as [number | null];
  child.stdin.destroy();
  return code ?? -1;
}

async function entries(spool: string): Promise<SpoolMeta[]> {
  const folder = new Spool(spool);
  const metas = await Promise.all((await folder.list()).map((id) => folder.entry(id).readMeta()));
  return metas.filter((m) => m !== undefined);
}

/** The one spool entry there must be (the handler ran once). */
async function onlyEntry(spool: string): Promise<SpoolMeta> {
  const all = await entries(spool);
  const meta = all[0];
  if (all.length !== 1 || !meta) throw new Error(`${all.length} spool entries, not 1`);
  return meta;
}

async function logLines(file: string): Promise<Record<string, unknown>[]> {
  return (await readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const uid = process.getuid?.() ?? 0;

async function sleeper(env: Record<string, string> = {}) {
  const child = spawn('sleep', ['600'], { env, stdio: 'ignore' });
  await once(child, 'spawn');
  return child;
}

t.test('a real core of a live process: stored, facts from /proc, never its environment', async (t) => {
  const s = await setup(t);
  const proc = await sleeper({ PODMORTEM_SECRET_TOKEN: 'hunter2-do-not-leak' });
  t.teardown(() => proc.kill('SIGKILL'));
  const pid = proc.pid ?? 0;
  execFileSync('gcore', ['-o', join(s.dir, 'core'), String(pid)], { stdio: 'ignore' });
  const corePath = join(s.dir, `core.${pid}`);
  const raw = await readFile(corePath);

  t.equal(
    await runHandler(s.handler, kernelArgs(pid, 'sleep', '/usr/bin/sleep'), createReadStream(corePath)),
    0,
  );
  const meta = await onlyEntry(s.spool);
  t.match(meta, {
    version: 1,
    node: hostname(),
    kernel: {
      pid,
      nsPid: pid,
      tid: pid,
      signal: 11,
      coreLimit: -1,
      comm: 'sleep',
      exePath: '/usr/bin/sleep',
      uid: 0,
    },
    proc: { cmdline: ['sleep', '600'], comm: 'sleep', nsPids: [pid], ppid: process.pid },
    dump: { status: 'stored', sizeBytes: raw.length, sha256: sha(raw), compression: 'zstd' },
  });
  t.equal(meta.proc?.cgroup, await readFile(`/proc/${pid}/cgroup`, 'utf8'));
  t.equal(meta.procError, undefined);
  t.equal(meta.argsError, undefined);
  t.ok(meta.handlerMs > 0);
  const paths = spoolFiles(s.spool, meta.crashId);
  t.equal(meta.dump.storedBytes, (await stat(paths.core)).size);
  t.same(
    zstdDecompressSync(await readFile(paths.core)),
    raw,
    'the spooled core decompresses to the bytes sent',
  );
  const notes = await readCoreNotes(new Spool(s.spool).entry(meta.crashId).openCore(meta));
  t.equal(notes.pid, pid);
  t.equal(notes.comm, 'sleep');
  t.notMatch(await readFile(paths.meta, 'utf8'), /hunter2/, 'the environment is not recorded');
  t.notMatch(await readFile(join(s.spool, 'handler.log'), 'utf8'), /hunter2/);
  const [line] = await logLines(join(s.spool, 'handler.log'));
  t.match(line, {
    level: 30,
    name: 'podmortem-handler',
    crashId: meta.crashId,
    pid,
    status: 'stored',
    msg: 'crash spooled',
  });
  t.equal(
    await readFile(join(s.dir, 'bin', 'podmortem-handler.stderr'), 'utf8'),
    '',
    'Node said nothing on stderr',
  );
  t.same(
    (await readdir(s.spool)).filter((n) => n.startsWith('.tmp-')),
    [],
    'no temporary file left',
  );
});

t.test('garbage on stdin is spooled as sent; the ELF reader then says it is not a core', async (t) => {
  const s = await setup(t);
  const garbage = Buffer.from('definitely not an ELF core\n'.repeat(1000));
  t.equal(await runHandler(s.handler, kernelArgs(999_999, 'x', '/x'), garbage), 0);
  const meta = await onlyEntry(s.spool);
  t.match(meta.dump, { status: 'stored', sizeBytes: garbage.length, sha256: sha(garbage) });
  await t.rejects(readCoreNotes(new Spool(s.spool).entry(meta.crashId).openCore(meta)), {
    code: 'PM_ERR_CORE_NOT_ELF',
    message: /not an ELF core/,
  });
});

t.test('an empty core: skipped with the reason, no dump file', async (t) => {
  const s = await setup(t);
  t.equal(await runHandler(s.handler, kernelArgs(999_999, 'x', '/x'), Buffer.alloc(0)), 0);
  const meta = await onlyEntry(s.spool);
  t.match(meta.dump, {
    status: 'skipped',
    reason: 'empty core: the kernel sent no bytes',
    sizeBytes: 0,
    storedBytes: 0,
  });
  t.same(
    (await readdir(s.spool)).filter((n) => n.endsWith('.core.zst')),
    [],
  );
});

t.test('missing or malformed arguments: a meta with what is known and the bad arguments named', async (t) => {
  const s = await setup(t);
  const core = syntheticCore({ notes: [note('CORE', 1, prstatus({ signal: 6, pid: 5 }))] });
  t.equal(await runHandler(s.handler, [], core), 0);
  t.equal(await runHandler(s.handler, ['12abc', '1', '1', '1', 'SEGV', '0', '0', 'app', '!app'], core), 0);
  const [none, bad] = await entries(s.spool);
  t.match(none, {
    argsError: /%P \(pid\) is missing.*%g \(gid\) is missing/,
    rawArgs: [],
    procError: 'no usable pid (%P) in the handler arguments: /proc not read',
    kernel: { pid: 0, comm: '' },
    dump: { status: 'stored', sizeBytes: core.length },
  });
  t.match(bad, {
    argsError:
      /%P \(pid\) is not a number: "12abc"; %s \(signal\) is not a number: "SEGV"; %h \(hostname\) is missing/,
    rawArgs: ['12abc', '1', '1', '1', 'SEGV', '0', '0', 'app', '!app'],
    kernel: { pid: 0, nsPid: 1, comm: 'app', exePath: '/app' },
    dump: { status: 'stored' },
  });
  const log = await logLines(join(s.spool, 'handler.log'));
  t.match(
    log.filter((l) => l.msg === 'bad handler arguments'),
    [
      { level: 40, errors: Array },
      { level: 40, errors: Array },
    ],
  );
});

t.test('a process that exited before /proc was read: procError, the crash still recorded', async (t) => {
  const s = await setup(t);
  const gone = spawn('true');
  await once(gone, 'exit');
  const pid = gone.pid ?? 0;
  t.equal(await runHandler(s.handler, kernelArgs(pid, 'true', '/usr/bin/true'), randomBytes(5000)), 0);
  const meta = await onlyEntry(s.spool);
  t.equal(meta.proc, undefined);
  t.match(meta.procError, new RegExp(`process ${pid} had exited before the handler read /proc/${pid}`));
  t.match(meta.dump, { status: 'stored', sizeBytes: 5000 });
});

t.test('size limit: the first bytes kept, the full size and the kept bytes sha256 recorded', async (t) => {
  const s = await setup(t, { maxCoreBytes: 1024 * 1024 });
  const raw = Buffer.concat([randomBytes(2 * 1024 * 1024), Buffer.alloc(3 * 1024 * 1024)]);
  t.equal(await runHandler(s.handler, kernelArgs(999_999, 'x', '/x'), raw), 0);
  const meta = await onlyEntry(s.spool);
  const kept = raw.subarray(0, 1024 * 1024);
  t.match(meta.dump, {
    status: 'truncated',
    reason: `size limit 1048576 bytes: kept the first 1048576 of ${raw.length} bytes`,
    sizeBytes: raw.length,
    limitBytes: 1024 * 1024,
    sha256: sha(kept),
  });
  t.same(zstdDecompressSync(await readFile(spoolFiles(s.spool, meta.crashId).core)), kept);
});

t.test('below the spool free-space floor: skipped with the reason, the size still honest', async (t) => {
  const s = await setup(t, { minFreeBytes: Number.MAX_SAFE_INTEGER });
  const raw = randomBytes(300_000);
  t.equal(await runHandler(s.handler, kernelArgs(999_999, 'x', '/x'), raw), 0);
  const meta = await onlyEntry(s.spool);
  t.match(meta.dump, {
    status: 'skipped',
    reason: new RegExp(`spool free space \\d+ bytes is below the floor of ${Number.MAX_SAFE_INTEGER} bytes`),
    sizeBytes: raw.length,
    storedBytes: 0,
  });
});

t.test(
  'a small spool filesystem: the floor stops the dump mid-way; without a floor, ENOSPC fails it',
  async (t) => {
    async function tmpfsSetup(sizeMiB: number, config: Partial<HandlerConfig>) {
      const s = await setup(t, { compression: 'none', ...config });
      const mnt = await mkdtemp(join(tmpdir(), 'pmt-'));
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${sizeMiB}m`, 'tmpfs', mnt]);
      t.teardown(async () => {
        execFileSync('umount', ['-l', mnt]);
        await rm(mnt, { recursive: true, force: true });
      });
      await installHandler({
        dir: join(s.dir, 'bin'),
        config: { spoolDir: mnt, compression: 'none', ...config },
      });
      return { ...s, spool: mnt };
    }
    const raw = randomBytes(64 * 1024 * 1024);

    const floor = await tmpfsSetup(48, { minFreeBytes: 16 * 1024 * 1024 });
    t.equal(await runHandler(floor.handler, kernelArgs(999_999, 'x', '/x'), raw), 0);
    const a = await onlyEntry(floor.spool);
    t.match(a.dump, {
      status: 'truncated',
      reason:
        /spool free space \d+ bytes is below the floor of 16777216 bytes: kept the first \d+ of 67108864 bytes/,
      sizeBytes: raw.length,
    });
    t.ok(a.dump.storedBytes > 0 && a.dump.storedBytes < 48 * 1024 * 1024);
    t.equal(a.dump.sha256, sha(raw.subarray(0, a.dump.storedBytes)), 'sha256 of the kept bytes');

    const full = await tmpfsSetup(16, { minFreeBytes: 0 });
    t.equal(await runHandler(full.handler, kernelArgs(999_999, 'x', '/x'), raw), 0);
    const b = await onlyEntry(full.spool);
    t.match(b.dump, {
      status: 'failed',
      reason: /spool write failed: .*ENOSPC/,
      sizeBytes: raw.length,
      storedBytes: 0,
    });
    t.same(
      (await readdir(full.spool)).filter((n) => n.includes('.core.zst')),
      [],
      'the partial core was removed',
    );
  },
);

t.test(
  'the deadline: a kernel that stops sending does not keep the handler; what arrived is kept',
  async (t) => {
    const s = await setup(t, { deadlineSeconds: 1 });
    t.equal(await runHandler(s.handler, kernelArgs(999_999, 'x', '/x'), 'hang'), 0);
    const meta = await onlyEntry(s.spool);
    t.match(meta.dump, {
      status: 'truncated',
      reason: /^deadline: stopped reading after 1 s and 100000 bytes/,
      sizeBytes: 100_000,
      sha256: sha(Buffer.alloc(100_000, 7)),
    });
  },
);

t.test('a bad configuration value: the default is used, the crash recorded, the log says why', async (t) => {
  const s = await setup(t);
  const cfg = join(s.dir, 'bin', 'podmortem-handler.json');
  await writeFile(cfg, JSON.stringify({ spoolDir: s.spool, compression: 'gzip', minFreeBytes: 0 }));
  t.equal(await runHandler(s.handler, kernelArgs(999_999, 'x', '/x'), randomBytes(100)), 0);
  t.match((await onlyEntry(s.spool)).dump, { status: 'stored', compression: 'zstd' });
  t.match(await logLines(join(s.spool, 'handler.log')), [
    { level: 40, msg: /compression: "gzip" is not valid/ },
    { msg: 'crash spooled' },
  ]);
});

t.test('a spool that cannot be written: the crash is named in the log, never dropped silently', async (t) => {
  const s = await setup(t);
  const notADir = join(s.dir, 'spool-is-a-file');
  await writeFile(notADir, '');
  const log = join(s.dir, 'handler.log');
  await installHandler({
    dir: join(s.dir, 'bin'),
    config: { spoolDir: notADir, logFile: log, minFreeBytes: 0 },
  });
  t.equal(await runHandler(s.handler, kernelArgs(4242, 'crasher', '/bin/crasher'), randomBytes(1000)), 1);
  const lines = await logLines(log);
  t.match(lines, [
    { level: 50, msg: /spool folder unusable/ },
    {
      level: 50,
      pid: 4242,
      comm: 'crasher',
      signal: 11,
      msg: /crash NOT spooled: the meta could not be written/,
      kernel: { exePath: '/bin/crasher' },
    },
  ]);
});

// Its peak memory is a figure of `npm run bench:capture`; here, that the log line tells it.
t.test('a 1 GiB core: stored whole, the log line telling its peak memory', async (t) => {
  const s = await setup(t);
  const hash = createHash('sha256');
  const block = randomBytes(1024 * 1024);
  let i = 0;
  const gib = new Readable({
    read() {
      if (i === 1024) return void this.push(null);
      // Mostly zero pages, every fourth MiB random, as in a real process's memory.
      const b = i++ % 4 === 0 ? block : Buffer.alloc(1024 * 1024);
      hash.update(b);
      this.push(b);
    },
  });
  t.equal(await runHandler(s.handler, kernelArgs(999_999, 'x', '/x'), gib), 0);
  const meta = await onlyEntry(s.spool);
  t.match(meta.dump, { status: 'stored', sizeBytes: 1024 ** 3, sha256: hash.digest('hex') });
  const [line] = await logLines(join(s.spool, 'handler.log'));
  t.ok(Number.isInteger(line?.maxRssKb) && Number(line?.maxRssKb) > 0, 'the peak RSS in the log line');
});

t.test(
  'storm: 200 handlers at once for one container keep dumps up to the rate limit and record every crash',
  async (t) => {
    const s = await setup(t, { rateLimitDumps: 5, rateLimitWindowSeconds: 600 });
    const containerId = randomBytes(32).toString('hex');
    const pod = createPodCgroup('5f0c6d2e-4b7a-4c1e-9a65-0d3c2b1a0f9e', containerId);
    const proc = spawn('bash', ['-c', `echo $$ > ${pod.path}/cgroup.procs && exec sleep 600`], {
      stdio: 'ignore',
    });
    t.teardown(async () => {
      proc.kill('SIGKILL');
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
      pod.remove();
    });
    await once(proc, 'spawn');
    const pid = proc.pid ?? 0;
    await until(
      'the container process to start',
      async () => (await readFile(`/proc/${pid}/comm`, 'utf8')) === 'sleep\n',
      2000,
      10,
    );
    const core = syntheticCore({
      notes: [
        note('CORE', 1, prstatus({ signal: 11, pid })),
        note('CORE', 3, prpsinfo({ pid, uid, gid: 0, comm: 'sleep', args: 'sleep 600' })),
      ],
      loads: [
        { vaddr: 0x400000n, data: elfHead('ab'.repeat(20)) },
        { vaddr: 0x600000n, data: randomBytes(256 * 1024) },
      ],
    });

    const codes = await Promise.all(
      Array.from({ length: 200 }, () =>
        runHandler(s.handler, kernelArgs(pid, 'sleep', '/usr/bin/sleep'), core),
      ),
    );
    t.same(new Set(codes), new Set([0]), 'every handler exited 0');
    const all = await entries(s.spool);
    t.equal(all.length, 200, 'every crash has a meta');
    t.equal(new Set(all.map((m) => m.crashId)).size, 200, 'each with its own crash id');
    const stored = all.filter((m) => m.dump.status === 'stored');
    t.equal(stored.length, 5, 'dumps kept up to the limit');
    t.equal(
      (await readdir(s.spool)).filter((n) => n.endsWith('.core.zst')).length,
      5,
      'five core files in the spool',
    );
    for (const m of stored) t.equal(m.dump.sha256, sha(core));
    const skipped = all.filter((m) => m.dump.status === 'skipped');
    t.equal(skipped.length, 195);
    const expected = {
      reason: `rate limit: 5 dumps already kept for container:${containerId} in the last 600 s (limit 5)`,
      sizeBytes: core.length,
    };
    t.same(
      skipped
        .map((m) => ({ reason: m.dump.reason, sizeBytes: m.dump.sizeBytes }))
        .filter((d) => d.reason !== expected.reason || d.sizeBytes !== expected.sizeBytes),
      [],
      'the others skipped by the rate limit with their honest size',
    );
    // The dumps not kept still have their notes: the core's first bytes through its note segment.
    const noteEnd = Number(core.readBigUInt64LE(64 + 8) + core.readBigUInt64LE(64 + 32));
    const head = core.subarray(0, noteEnd).toString('base64');
    t.same(
      skipped.filter((m) => m.coreHead !== head).map((m) => m.crashId),
      [],
      'every skipped crash keeps the core head',
    );
    t.same(
      stored.filter((m) => m.coreHead !== undefined).map((m) => m.crashId),
      [],
      'a stored dump holds its own notes',
    );
    t.ok(
      all.every((m) => m.proc?.cgroup.includes(containerId)),
      'each read the container cgroup',
    );
    const log = (await logLines(join(s.spool, 'handler.log'))).filter((l) => l.msg === 'crash spooled');
    t.equal(log.length, 200, 'one log line per crash');
    t.equal(
      await text(createReadStream(join(s.dir, 'bin', 'podmortem-handler.stderr'))),
      '',
      'no handler wrote to stderr',
    );
  },
);
