import { execFileSync } from 'node:child_process';
import { mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { buildIdOf, isElf64Le, readElfBuildId } from './elf-build-id.ts';

// On files gcc and the system made; the expected build ids are readelf's.

const readelfBuildId = (path: string) =>
  /Build ID: ([0-9a-f]+)/.exec(
    execFileSync('readelf', ['-n', path], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }),
  )?.[1];

async function buildIdOfFile(path: string): Promise<string | undefined> {
  const file = await open(path, 'r');
  try {
    return await readElfBuildId(async (offset, length) => {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await file.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    });
  } finally {
    await file.close();
  }
}

const dir = await mkdtemp(join(tmpdir(), 'pm-buildid-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
await writeFile(join(dir, 'p.c'), 'int main(void) { return 0; }\n');
const build = (name: string, ...flags: string[]) => {
  const out = join(dir, name);
  execFileSync('gcc', ['-O0', ...flags, '-o', out, join(dir, 'p.c')]);
  return out;
};
const sha1 = build('sha1', '-Wl,--build-id=sha1');
const md5 = build('md5', '-Wl,--build-id=md5');
const none = build('none', '-Wl,--build-id=none');
const libc = /=> (\S+libc\.so\.6)/.exec(execFileSync('ldd', [sha1], { encoding: 'utf8' }))?.[1] ?? '';

t.test('the build id of executables and a library, as readelf reads it', async (t) => {
  for (const path of [sha1, md5, libc, process.execPath]) {
    const expected = readelfBuildId(path);
    t.ok(expected, `readelf finds a build id in ${path}`);
    t.equal(await buildIdOfFile(path), expected, path);
  }
  t.equal((await buildIdOfFile(md5))?.length, 32, 'an md5 build id is 16 bytes');
});

t.test('the head alone serves when the notes lie within it', async (t) => {
  const head = (await readFile(sha1)).subarray(0, 16 * 1024);
  t.equal(buildIdOf(head), readelfBuildId(sha1));
  t.equal(buildIdOf(head.subarray(0, 100)), undefined, 'notes past the head: not found');
});

t.test('no build id, or no ELF file', async (t) => {
  t.equal(readelfBuildId(none), undefined, 'readelf agrees there is none');
  t.equal(await buildIdOfFile(none), undefined);
  await writeFile(join(dir, 'text'), 'just text, long enough to be read as a header '.repeat(4));
  t.equal(await buildIdOfFile(join(dir, 'text')), undefined);
  t.equal(isElf64Le(await readFile(join(dir, 'text'))), false);
  await writeFile(join(dir, 'empty'), '');
  t.equal(await buildIdOfFile(join(dir, 'empty')), undefined);
});
