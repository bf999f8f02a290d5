import { execFileSync } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { dumpRelPath, moduleKey, type CrashEvent } from '@podmortem/contract';
import { FsStore, readBytes } from '@podmortem/contract/store';
import { analyzeCrash } from '../analyzer/src/crash-analysis.ts';
import { createTelemetry as createAnalyzerTelemetry } from '../analyzer/src/telemetry.ts';
import { buildCrashEvent } from '../collector/src/agent/crash-event.ts';
import { installHandler } from '../collector/src/agent/handler-installer.ts';
import { ModuleWriter } from '../collector/src/agent/module-writer.ts';
import { Spool } from '../collector/src/agent/spool.ts';
import { createTelemetry } from '../collector/src/agent/telemetry.ts';
import type { HandlerConfig } from '../collector/src/handler-config.ts';
import type { SpoolMeta } from '../collector/src/spool-entry.ts';
import { pointKernelAt } from './support/core-pattern-lock.ts';
import { createPodCgroup } from './support/pod-cgroup.ts';
import { until } from './support/poll.ts';

// Modules at crash time through the real kernel: the handler reads each mapped ELF file through
// /proc/<pid>/map_files while the kernel holds the crashing process, copies each build id once into
// the node cache, and the agent's module writer stores it at _buildid/<id>/executable. Cases: an
// executable deleted before the crash, one visible only in another mount namespace, a storm of
// crashes of one binary, and a cache over its cap. kernel.core_pattern is changed only under the
// shared lock and restored in teardown.

const source = (tag: string, before = '') => `
#define _GNU_SOURCE
#include <stdio.h>
#include <unistd.h>
const char *tag = "${tag}";
__attribute__((noinline)) static void write_fault(void) {
  *(volatile int *)0xdead000 = 1; /* CRASH */
}
int main(int argc, char **argv) {
  (void)argc;
  ${before}
  printf("pid %d %s\\n", getpid(), tag);
  fflush(stdout);
  write_fault();
  return 0;
}`;
const CRASH_LINE =
  source('x')
    .split('\n')
    .findIndex((l) => l.includes('/* CRASH */')) + 1;

const dir = await mkdtemp(join(tmpdir(), 'pmm-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const spool = join(dir, 'spool');
const base: Partial<HandlerConfig> = { spoolDir: spool, minFreeBytes: 0, rateLimitDumps: 1000 };
const install = (config: Partial<HandlerConfig> = {}) =>
  installHandler({ dir: join(dir, 'bin'), config: { ...base, ...config } });
const installed = await install();

async function compile(name: string, code: string): Promise<string> {
  await writeFile(join(dir, `${name}.c`), code);
  const out = join(dir, name);
  execFileSync('gcc', ['-g', '-O0', '-Wall', '-o', out, join(dir, `${name}.c`)]);
  return out;
}
const readelfBuildId = (path: string) =>
  /Build ID: ([0-9a-f]+)/.exec(
    execFileSync('readelf', ['-n', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
  )?.[1] ?? '';

const pod = createPodCgroup(randomUUID(), randomBytes(32).toString('hex'));
t.teardown(() => pod.remove());

// core_pipe_limit > 0: the kernel keeps /proc/<pid> until the handler is done with it.
t.teardown(await pointKernelAt(installed.corePattern, 16));

await mkdir(join(dir, 'storage'));
const store = new FsStore({ root: join(dir, 'storage') });
const telemetry = createTelemetry(async () => ({ entries: 0, bytes: 0 }));
const writer = new ModuleWriter({ store, minFreeBytes: 0, spoolDir: spool, telemetry });

async function metasWhere(what: string, match: (m: SpoolMeta) => boolean, count: number) {
  return until(
    what,
    async () => {
      const found: SpoolMeta[] = [];
      for (const id of await new Spool(spool).list()) {
        const meta = await new Spool(spool).entry(id).readMeta();
        if (meta && match(meta)) found.push(meta);
      }
      return found.length >= count ? found : undefined;
    },
    60_000,
  );
}

async function crashOnce(program: string, args: string[] = []) {
  const result = await pod.run(program, args);
  const pid = Number(/pid (\d+)/.exec(result.stdout)?.[1]);
  const [meta] = await metasWhere(
    `the spool entry of pid ${pid}: ${JSON.stringify(result)}`,
    (m) => m.kernel.pid === pid,
    1,
  );
  if (!meta) throw new Error('unreachable');
  return { result, meta };
}

/** The agent's part: the event, with the modules stored and marked (and the dump, when asked). */
async function deliverModules(meta: SpoolMeta, withDump = false) {
  const event = await writer.storeModules(
    meta,
    buildCrashEvent({ meta, owner: { kind: 'host' }, nodeName: 'n1' }),
  );
  if (withDump) {
    event.dump = { ...event.dump, compression: 'zstd', path: dumpRelPath(event) };
    await store.putBytes(dumpRelPath(event), await readFile(join(spool, `${meta.crashId}.core.zst`)));
  }
  await new Spool(spool).entry(meta.crashId).remove();
  return event;
}

/**
 * The analyzer's crashing frame of a delivered crash: from the store alone, where only the
 * modules captured at crash time can give it a name and a line.
 */
async function crashingFrame(event: CrashEvent) {
  const { analysis } = await analyzeCrash(event, {
    store,
    telemetry: createAnalyzerTelemetry(undefined, false),
    version: '0.0.0-test',
    workDir: await mkdtemp(join(dir, 'analyzer-')),
    maxTempBytes: 1024 ** 3,
    unwinder: { deadlineMs: 20_000 },
    signal: new AbortController().signal,
  });
  return { status: analysis.status, reason: analysis.reason, frame: analysis.frames?.[0] };
}

const handlerLines = async () =>
  (await readFile(join(spool, 'handler.log'), 'utf8'))
    .split('\n')
    .filter((l) => l !== '')
    .map(
      (l) =>
        JSON.parse(l) as { msg: string; crashId: string; modules?: { copiedBuildIds: string[]; ms: number } },
    );

t.test(
  'an executable deleted before the crash: captured from map_files and stored byte for byte',
  async (t) => {
    const original = await compile('deleted', source('deleted', 'unlink(argv[0]);'));
    const id = readelfBuildId(original);
    const copy = join(dir, 'deleted-copy');
    await copyFile(original, copy);
    const { result, meta } = await crashOnce(copy);
    t.match(result, { signal: 'SIGSEGV', coreDumped: true });
    t.notOk(existsSync(copy), 'the program unlinked itself');
    t.match(meta.proc, { exe: copy, exeDeleted: true });
    const module = meta.modules?.find((m) => m.path === copy);
    t.match(module, { deleted: true, buildId: id, capture: 'copied' });
    t.ok(
      meta.modules?.some((m) => /libc\.so/.test(m.path) && m.buildId),
      'the C library with its build id',
    );
    t.equal(meta.dump.status, 'stored');

    const event = await deliverModules(meta, true);
    t.match(event.process, { executable: copy, executable_deleted: true });
    t.match(
      event.analysis?.modules?.find((m) => m.path === copy),
      { build_id: id, deleted: true, captured: true, start: /^0x[0-9a-f]+$/ },
    );
    t.same(
      await readBytes(store, moduleKey(id)),
      await readFile(original),
      'stored at _buildid/<id>/executable',
    );
    t.ok(existsSync(join(spool, 'modules', `${id}.stored`)), 'the node remembers it stored it');
    t.notOk(existsSync(join(spool, 'modules', id)), 'its bytes left the node cache');
    t.match(
      await crashingFrame(event),
      { status: 'ok', frame: { function: 'write_fault', file: join(dir, 'deleted.c'), line: CRASH_LINE } },
      'the analyzer names the crashing function and line from the captured file',
    );
  },
);

t.test('a binary only in another mount namespace: captured and stored', async (t) => {
  const original = await compile('private', source('private'));
  const id = readelfBuildId(original);
  const mnt = join(dir, 'private-mnt');
  await mkdir(mnt);
  const inside = join(mnt, 'prog');
  const { result, meta } = await crashOnce('unshare', [
    '-m',
    '--propagation',
    'private',
    'sh',
    '-c',
    `mount -t tmpfs pm-private "${mnt}" && cp "${original}" "${inside}" && exec "${inside}"`,
  ]);
  t.match(result, { signal: 'SIGSEGV', coreDumped: true });
  t.notOk(existsSync(inside), 'not on the host');
  t.match(
    meta.modules?.find((m) => m.path === inside),
    { buildId: id, capture: 'copied' },
  );
  t.notOk(meta.modules?.find((m) => m.path === inside)?.deleted);
  const event = await deliverModules(meta, true);
  t.match(
    event.analysis?.modules?.find((m) => m.path === inside),
    { build_id: id, captured: true },
  );
  t.same(await readBytes(store, moduleKey(id)), await readFile(original));
  t.match(
    await crashingFrame(event),
    { status: 'ok', frame: { function: 'write_fault', file: join(dir, 'private.c'), line: CRASH_LINE } },
    'the analyzer names the crashing function and line from the captured file',
  );
});

t.test('a storm of crashes of one binary copies it once', async (t) => {
  const STORM = 24;
  const program = await compile('storm', source('storm'));
  const id = readelfBuildId(program);
  const run = await pod.run('bash', [
    '-c',
    `seq ${STORM} | xargs -P 8 -I{} sh -c '"${program}" >/dev/null 2>&1; true'`,
  ]);
  t.equal(run.code, 0);
  const metas = await metasWhere(
    `${STORM} crashes of the storm binary`,
    (m) => m.proc?.exe === program,
    STORM,
  );
  t.equal(metas.length, STORM);
  const captures = metas.map((m) => m.modules?.find((x) => x.path === program)?.capture);
  t.equal(captures.filter((c) => c === 'copied').length, 1, 'one handler copied it');
  t.equal(captures.filter((c) => c === 'cached').length, STORM - 1, 'the others found it cached');
  const ids = new Set(metas.map((m) => m.crashId));
  const copies = (await handlerLines())
    .filter((l) => l.msg === 'crash spooled' && ids.has(l.crashId))
    .flatMap((l) => l.modules?.copiedBuildIds ?? [])
    .filter((b) => b === id);
  t.equal(copies.length, 1, 'the handler log says it once');
  for (const meta of metas) {
    const event = await deliverModules(meta);
    t.equal(event.analysis?.modules?.find((m) => m.path === program)?.captured, true);
  }
  t.same(await readBytes(store, moduleKey(id)), await readFile(program));
});

t.test('the cache over its cap: recorded as skipped with the reason, the crash still spooled', async (t) => {
  await install({ moduleCacheMaxBytes: 1 });
  t.teardown(() => install());
  const program = await compile('capped', source('capped'));
  const { meta } = await crashOnce(program);
  t.equal(meta.dump.status, 'stored', 'the dump is kept');
  t.match(
    meta.modules?.find((m) => m.path === program),
    {
      buildId: readelfBuildId(program),
      capture: 'skipped',
      skipped: 'cache-full',
      reason: /moduleCacheMaxBytes 1/,
    },
  );
  const event = await deliverModules(meta);
  t.match(
    event.analysis?.modules?.find((m) => m.path === program),
    {
      captured: false,
      skipped: 'cache-full',
    },
  );
  await t.rejects(store.stat(moduleKey(readelfBuildId(program))), { code: 'PM_ERR_STORE_NOT_FOUND' });
});

t.test('the handler wrote nothing on stderr', async (t) => {
  t.equal(await readFile(join(dir, 'bin', 'podmortem-handler.stderr'), 'utf8'), '');
});
