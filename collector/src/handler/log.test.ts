import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { handlerLog, rotateHandlerLog } from './log.ts';

async function tmp(t: { teardown: (f: () => Promise<void>) => void }) {
  const dir = await mkdtemp(join(tmpdir(), 'pm-hlog-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('one JSON line per call, in pino shape, with the crash named', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'handler.log');
  const log = handlerLog(file, { crashId: 'c1', pid: 7 });
  await log.write('info', 'crash spooled', { status: 'stored' });
  await log.write('error', 'bad');
  const lines = (await readFile(file, 'utf8'))
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as unknown);
  t.match(lines, [
    {
      level: 30,
      time: Number,
      name: 'podmortem-handler',
      crashId: 'c1',
      pid: 7,
      status: 'stored',
      msg: 'crash spooled',
    },
    { level: 50, msg: 'bad' },
  ]);
  t.equal((await stat(file)).mode & 0o777, 0o600, 'readable by root only (crash facts)');
});

t.test('an unwritable log file: the line goes to the kernel log instead', async (t) => {
  const dir = await tmp(t);
  const kmsg = join(dir, 'kmsg');
  await writeFile(kmsg, '');
  const log = handlerLog(join(dir, 'missing', 'handler.log'), { crashId: 'c2' }, kmsg);
  await log.write('error', 'crash NOT spooled');
  t.match(
    await readFile(kmsg, 'utf8'),
    /^<3>podmortem-handler: log .* unwritable \(ENOENT.*"crashId":"c2".*crash NOT spooled/,
  );
});

t.test('an oversized log is moved aside', async (t) => {
  const dir = await tmp(t);
  const file = join(dir, 'handler.log');
  await writeFile(file, 'x'.repeat(100));
  await rotateHandlerLog(file, 50);
  t.equal(await readFile(file + '.1', 'utf8'), 'x'.repeat(100));
  await rotateHandlerLog(file, 50); // absent now: nothing to do, no error
});
