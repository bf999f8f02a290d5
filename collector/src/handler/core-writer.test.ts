import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { setTimeout as sleep } from 'node:timers/promises';
import { zstdDecompressSync } from 'node:zlib';
import t from 'tap';
import { pipeInput, writeCore, type CoreInput } from './core-writer.ts';

function chunks(list: Buffer[]): CoreInput & { read: number } {
  const input = {
    read: 0,
    async next() {
      const c = list.shift();
      if (c) input.read += c.length;
      return c;
    },
  };
  return input;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function tmp(t: { teardown: (f: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'pm-cw-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('keeps every byte, compressed, with the sha256 of the raw bytes', async (t) => {
  const dir = await tmp(t);
  const data = [randomBytes(100_000), Buffer.alloc(300_000), randomBytes(5)];
  const raw = Buffer.concat(data);
  const path = join(dir, 'c.zst');
  const r = await writeCore({
    input: chunks([...data]),
    path,
    limitBytes: 1e9,
    compression: 'zstd',
    zstdLevel: 3,
  });
  t.match(r, { sizeBytes: raw.length, keptBytes: raw.length, sha256: sha(raw), ended: true });
  t.equal(r.stopped, undefined);
  t.equal(r.storedBytes, (await stat(path)).size);
  t.ok(r.storedBytes < raw.length / 2, 'compressed');
  t.same(zstdDecompressSync(await readFile(path)), raw);
});

t.test('past the limit: the first bytes kept, the rest read and counted', async (t) => {
  const dir = await tmp(t);
  const raw = randomBytes(1_000_000);
  const input = chunks([raw.subarray(0, 400_000), raw.subarray(400_000)]);
  const path = join(dir, 'c');
  const r = await writeCore({
    input,
    path,
    limitBytes: 250_000,
    compression: 'none',
    zstdLevel: 3,
  });
  t.match(r, {
    sizeBytes: 1_000_000,
    keptBytes: 250_000,
    stopped: 'limit',
    sha256: sha(raw.subarray(0, 250_000)),
  });
  t.equal(input.read, 1_000_000, 'the input was drained');
  t.same(await readFile(path), raw.subarray(0, 250_000));
  const exact = await writeCore({
    input: chunks([raw.subarray(0, 10)]),
    path: path + '2',
    limitBytes: 10,
    compression: 'none',
    zstdLevel: 3,
  });
  t.equal(exact.stopped, undefined, 'a core of exactly the limit is whole');
});

t.test(
  'at the deadline it stops reading and the file is a complete zstd frame of what arrived',
  async (t) => {
    const dir = await tmp(t);
    const first = randomBytes(70_000);
    const path = join(dir, 'c.zst');
    const pipe = new PassThrough();
    pipe.write(first);
    const input = pipeInput(
      pipe,
      sleep(200).then(() => undefined),
    );
    const r = await writeCore({ input, path, limitBytes: 1e9, compression: 'zstd', zstdLevel: 1 });
    t.match(r, { sizeBytes: 70_000, keptBytes: 70_000, stopped: 'deadline', ended: false });
    t.ok(pipe.destroyed, 'the pipe was let go');
    t.same(zstdDecompressSync(await readFile(path)), first);
  },
);

t.test('a pipe that fails mid-way: what arrived is kept, the error is reported', async (t) => {
  const dir = await tmp(t);
  const pipe = new PassThrough();
  pipe.write(Buffer.alloc(1000, 1));
  setTimeout(() => pipe.destroy(new Error('EIO: pipe broke')), 50);
  const input = pipeInput(pipe, new Promise<void>(() => undefined));
  const r = await writeCore({
    input,
    path: join(dir, 'c'),
    limitBytes: 1e9,
    compression: 'none',
    zstdLevel: 3,
  });
  t.match(r, { sizeBytes: 1000, keptBytes: 1000, ended: false });
  t.match(input.error, /EIO: pipe broke/);
});

t.test('low free space stops keeping bytes, with the reason', async (t) => {
  const dir = await tmp(t);
  const data = Array.from({ length: 10 }, () => randomBytes(1000));
  const r = await writeCore({
    input: chunks(data),
    path: join(dir, 'c'),
    limitBytes: 1e9,
    compression: 'none',
    zstdLevel: 3,
    spaceCheckBytes: 3000,
    checkSpace: async () => 'spool nearly full',
  });
  t.match(r, { sizeBytes: 10_000, keptBytes: 3000, stopped: 'space: spool nearly full' });
});

t.test('a failed write removes the file and still drains the input', async (t) => {
  const dir = await tmp(t);
  const input = chunks([randomBytes(1000), randomBytes(1000)]);
  const r = await writeCore({
    input,
    path: join(dir, 'missing-dir', 'c'),
    limitBytes: 1e9,
    compression: 'zstd',
    zstdLevel: 3,
  });
  t.match(r.writeError, { code: 'ENOENT' });
  t.equal(r.storedBytes, 0);
  t.equal(input.read, 2000);
  t.equal(r.sizeBytes, 2000);
});
