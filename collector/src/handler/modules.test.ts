import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { moduleCacheFiles } from '../spool-entry.ts';
import { captureModules, type ModuleCaptureParams } from './modules.ts';

// The capture against a /proc stand-in whose map_files entries are links to files gcc made, as
// the kernel's are magic links to the mapped files (the real /proc: test/collector-modules-kernel).
// Expected build ids are readelf's.

const readelfBuildId = (path: string) =>
  /Build ID: ([0-9a-f]+)/.exec(
    execFileSync('readelf', ['-n', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
  )?.[1];

const dir = await mkdtemp(join(tmpdir(), 'pm-modules-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
await writeFile(join(dir, 'p.c'), 'int main(void) { return 0; }\n');
const build = (name: string, ...flags: string[]) => {
  const out = join(dir, name);
  execFileSync('gcc', ['-O0', ...flags, '-o', out, join(dir, 'p.c')]);
  return out;
};
const app = build('app');
const other = build('other', '-DOTHER=1', '-Wl,--build-id=md5');
const noId = build('no-id', '-Wl,--build-id=none');
const data = join(dir, 'locale-archive');
await writeFile(data, Buffer.alloc(8192, 7));
const appSize = (await stat(app)).size;

interface Fake {
  path: string;
  target?: string;
  deleted?: boolean;
}

/** A /proc/<pid> with one two-mapping entry per file; no map_files link when target is absent. */
async function fakeProc(name: string, files: Fake[]): Promise<string> {
  const root = join(dir, name);
  const pidDir = join(root, '4242');
  await mkdir(join(pidDir, 'map_files'), { recursive: true });
  const lines: string[] = [];
  let base = 0x555500000000;
  for (const [i, f] of files.entries()) {
    const suffix = f.deleted ? ' (deleted)' : '';
    for (const [offset, perms] of [
      [0, 'r--p'],
      [0x1000, 'r-xp'],
    ] as const) {
      const start = (base + offset).toString(16);
      const end = (base + offset + 0x1000).toString(16);
      lines.push(
        `${start}-${end} ${perms} ${offset.toString(16).padStart(8, '0')} fd:01 ${100 + i}    ${f.path}${suffix}`,
      );
      if (f.target && offset === 0) await symlink(f.target, join(pidDir, 'map_files', `${start}-${end}`));
    }
    base += 0x100000;
  }
  lines.push('7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0      [stack]');
  await writeFile(join(pidDir, 'maps'), lines.join('\n') + '\n');
  return root;
}

function params(
  procRoot: string,
  spoolDir: string,
  over: Partial<ModuleCaptureParams> = {},
): ModuleCaptureParams {
  return {
    pid: 4242,
    spoolDir,
    procRoot,
    cacheMaxBytes: 1 << 30,
    moduleMaxBytes: 1 << 30,
    minFreeBytes: 0,
    copyBytes: 1 << 30,
    deadline: Infinity,
    staleClaimMs: 60_000,
    ...over,
  };
}

t.test('each ELF module once per build id, byte for byte; then a cache hit', async (t) => {
  const spool = join(dir, 'spool-a');
  const proc = await fakeProc('proc-a', [
    { path: '/app/bin/app', target: app, deleted: true },
    { path: '/usr/lib/locale/locale-archive', target: data },
    { path: '/usr/lib/other.so', target: other },
  ]);
  const first = await captureModules(params(proc, spool));
  t.same(
    first.modules.map((m) => [m.path, m.deleted, m.buildId, m.capture, m.sizeBytes]),
    [
      ['/app/bin/app', true, readelfBuildId(app), 'copied', appSize],
      ['/usr/lib/other.so', undefined, readelfBuildId(other), 'copied', (await stat(other)).size],
    ],
    'the data file is no module',
  );
  t.same(first.modules[0]?.ranges, [
    { start: '0x555500000000', end: '0x555500001000' },
    { start: '0x555500001000', end: '0x555500002000' },
  ]);
  const id = readelfBuildId(app) ?? '';
  t.same(await readFile(moduleCacheFiles(spool, id).bytes), await readFile(app), 'the very bytes');
  t.match(first.summary, {
    modules: 2,
    copied: 2,
    cached: 0,
    copiedBytes: appSize + (await stat(other)).size,
  });

  const again = await captureModules(params(proc, spool));
  t.same(
    again.modules.map((m) => m.capture),
    ['cached', 'cached'],
  );
  t.match(again.summary, { copied: 0, cached: 2, copiedBytes: 0, copiedBuildIds: [] });

  // Stored by the agent: the marker alone stands for it.
  await rm(moduleCacheFiles(spool, id).bytes);
  await writeFile(moduleCacheFiles(spool, id).stored, '');
  t.equal((await captureModules(params(proc, spool))).modules[0]?.capture, 'cached');
});

t.test('what is skipped says why', async (t) => {
  const proc = await fakeProc('proc-b', [
    { path: '/app/bin/app', target: app },
    { path: '/gone/lib.so' },
    { path: '/usr/lib/no-id', target: noId },
  ]);
  const skipped = (r: Awaited<ReturnType<typeof captureModules>>) =>
    r.modules.map((m) => [m.path, m.capture, m.skipped]);

  const r = await captureModules(params(proc, join(dir, 'spool-b')));
  t.same(skipped(r), [
    ['/app/bin/app', 'copied', undefined],
    ['/gone/lib.so', 'skipped', 'unreadable'],
    ['/usr/lib/no-id', 'skipped', 'no-build-id'],
  ]);
  t.match(r.modules[1]?.reason, /ENOENT/);
  t.same(r.summary.skipped, { unreadable: 1, 'no-build-id': 1 });

  const full = await captureModules(params(proc, join(dir, 'spool-c'), { cacheMaxBytes: appSize - 1 }));
  t.match(full.modules[0], { capture: 'skipped', skipped: 'cache-full', reason: /moduleCacheMaxBytes/ });
  t.same(await readdir(join(dir, 'spool-c', 'modules')), [], 'nothing copied');

  const floor = await captureModules(
    params(proc, join(dir, 'spool-h'), { minFreeBytes: Number.MAX_SAFE_INTEGER }),
  );
  t.match(floor.modules[0], { skipped: 'cache-full', reason: /floor minFreeBytes/ });

  const large = await captureModules(params(proc, join(dir, 'spool-d'), { moduleMaxBytes: 100 }));
  t.match(large.modules[0], { skipped: 'too-large', buildId: readelfBuildId(app) });

  const bytes = await captureModules(params(proc, join(dir, 'spool-e'), { copyBytes: 100 }));
  t.match(bytes.modules[0], { skipped: 'budget', reason: /moduleCopyBytes/ });

  const late = await captureModules(params(proc, join(dir, 'spool-f'), { deadline: 0 }));
  t.same(
    late.modules.map((m) => m.skipped),
    ['budget', 'budget', 'budget'],
    'listed, with neither build ids nor copies',
  );
});

t.test(
  'a build id another handler is copying right now is taken as cached; a stale claim is taken over',
  async (t) => {
    const spool = join(dir, 'spool-g');
    const proc = await fakeProc('proc-g', [{ path: '/app/bin/app', target: app }]);
    const files = moduleCacheFiles(spool, readelfBuildId(app) ?? '');
    await mkdir(join(spool, 'modules'), { recursive: true });
    await writeFile(files.claim, 'half');
    t.equal((await captureModules(params(proc, spool))).modules[0]?.capture, 'cached');
    t.equal(await readFile(files.claim, 'utf8'), 'half', 'the other handler’s copy is left alone');
    const taken = await captureModules(params(proc, spool, { staleClaimMs: 0 }));
    t.equal(taken.modules[0]?.capture, 'copied');
    t.same(await readFile(files.bytes), await readFile(app));
  },
);
