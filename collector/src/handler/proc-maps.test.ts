import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { mappedFiles, parseProcMaps, withoutDeletedSuffix } from './proc-maps.ts';

t.test('maps lines as the kernel writes them', async (t) => {
  const text = [
    '55d0c0a00000-55d0c0a01000 r--p 00000000 fd:01 1234567                    /usr/bin/my app (deleted)',
    '55d0c0a01000-55d0c0a02000 r-xp 00001000 fd:01 1234567                    /usr/bin/my app (deleted)',
    '55d0c1000000-55d0c1021000 rw-p 00000000 00:00 0                          [heap]',
    '7f3bbbd90000-7f3bbbdb8000 r--p 00000000 fd:01 99                         /usr/lib/libc.so.6',
    '7f3bbbdb8000-7f3bbbf4d000 r-xp 00028000 fd:01 99                         /usr/lib/libc.so.6',
    '7f3bbbf60000-7f3bbbf70000 rw-p 00000000 00:00 0 ',
    '7fff5f7ff000-7fff5f801000 r-xp 00000000 00:00 0                          [vdso]',
    'not a maps line',
  ].join('\n');
  const mappings = parseProcMaps(text);
  t.equal(mappings.length, 7);
  t.same(mappings[1], {
    start: '55d0c0a01000',
    end: '55d0c0a02000',
    perms: 'r-xp',
    offset: 0x1000,
    dev: 'fd:01',
    inode: 1234567,
    path: '/usr/bin/my app (deleted)',
  });
  t.equal(mappings[5]?.path, '', 'anonymous memory has no path');
  const files = mappedFiles(mappings);
  t.same(
    files.map((f) => [f.path, f.deleted, f.mappings.length]),
    [
      ['/usr/bin/my app', true, 2],
      ['/usr/lib/libc.so.6', false, 2],
    ],
  );
  t.same(withoutDeletedSuffix('/x (deleted)'), { path: '/x', deleted: true });
  t.same(withoutDeletedSuffix('/x'), { path: '/x', deleted: false });
});

t.test('a real process: its executable, and the same after it is unlinked', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'pm-maps-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  // It says so once main runs: by then the dynamic loader has mapped the C library ('spawn' comes
  // when the exec succeeded, which can be before ld.so has mapped anything).
  await writeFile(
    join(dir, 'p.c'),
    '#include <unistd.h>\nint main(void) { write(1, "r", 1); pause(); return 0; }\n',
  );
  const exe = join(dir, 'pauser');
  execFileSync('gcc', ['-o', exe, join(dir, 'p.c')]);
  const inode = (await stat(exe)).ino;
  const child = spawn(exe, { stdio: ['ignore', 'pipe', 'ignore'] });
  t.teardown(() => child.kill('SIGKILL'));
  await once(child.stdout, 'data');
  const read = async () => mappedFiles(parseProcMaps(await readFile(`/proc/${child.pid}/maps`, 'utf8')));
  const files = await read();
  const mine = files.find((f) => f.path === exe);
  t.match(mine, { path: exe, deleted: false, inode });
  t.ok((mine?.mappings.length ?? 0) >= 2, 'text and data of the executable');
  t.ok(
    files.some((f) => /libc\.so/.test(f.path)),
    'the C library',
  );
  await unlink(exe);
  t.match(
    (await read()).find((f) => f.inode === inode),
    { path: exe, deleted: true },
  );
});
