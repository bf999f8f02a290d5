import { mkdtemp, readdir, readFile, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import {
  makeDirDurably,
  temporaryPath,
  TMP_PREFIX,
  writeFileAtomically,
  writeJsonAtomically,
  writeStreamAtomically,
} from './durable-write.ts';

const scratch = () => mkdtemp(join(tmpdir(), 'pm-durable-'));

t.test(
  'a replaced file holds the new content, with the mode asked for, and no temporary is left',
  async (t) => {
    const dir = await scratch();
    const path = join(dir, 'state.json');
    await writeFile(path, 'old');
    await writeJsonAtomically(path, { a: 1 }, { mode: 0o640 });
    t.strictSame(JSON.parse(await readFile(path, 'utf8')), { a: 1 });
    t.equal((await stat(path)).mode & 0o777, 0o640);
    t.strictSame(await readdir(dir), ['state.json']);
  },
);

t.test('process-crash durability writes the same bytes', async (t) => {
  const dir = await scratch();
  const path = join(dir, 'window');
  await writeFileAtomically(path, 'x', { durability: 'process-crash' });
  t.equal(await readFile(path, 'utf8'), 'x');
  t.equal((await stat(path)).mode & 0o777, 0o600, 'private unless asked otherwise');
});

t.test('a failed write leaves the old file and no temporary behind', async (t) => {
  const dir = await scratch();
  const path = join(dir, 'core');
  await writeFile(path, 'old');
  await t.rejects(
    writeStreamAtomically(path, async (tmp) => {
      await writeFile(tmp, 'half');
      throw new Error('disk full');
    }),
    /disk full/,
  );
  t.equal(await readFile(path, 'utf8'), 'old');
  t.strictSame(await readdir(dir), ['core']);
});

t.test('a given temporary name is used, and a default one is hidden from readers', async (t) => {
  const dir = await scratch();
  t.ok(temporaryPath(join(dir, 'a.json')).startsWith(join(dir, TMP_PREFIX)));
  t.not(temporaryPath(join(dir, 'a.json')), temporaryPath(join(dir, 'a.json')), 'unique per writer');
  const tmp = join(dir, '.tmp-mine');
  let seen = '';
  await writeStreamAtomically(
    join(dir, 'b'),
    async (t2) => {
      seen = t2;
      await writeFile(t2, 'b');
    },
    { tmp },
  );
  t.equal(seen, tmp);
  t.equal(await readFile(join(dir, 'b'), 'utf8'), 'b');
});

t.test('makeDirDurably creates every missing folder and accepts an existing one', async (t) => {
  const dir = await scratch();
  const deep = join(dir, 'a', 'b', 'c');
  await makeDirDurably(deep);
  t.ok((await stat(deep)).isDirectory());
  await makeDirDurably(deep);
  t.ok((await stat(deep)).isDirectory());
});
