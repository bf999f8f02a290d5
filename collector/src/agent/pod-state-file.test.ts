import { mkdtemp, readdir, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { removeStaleTemporaries } from './pod-state-file.ts';

t.test(
  'stale temporaries of the state file are removed, in both namings; fresh and foreign files stay',
  async (t) => {
    const dir = await mkdtemp(join(tmpdir(), 'pm-podstate-'));
    const file = join(dir, 'pods.json');
    const old = new Date(Date.now() - 120_000);
    const names = {
      current: '.tmp-0a1b2c3d4e5f-pods.json',
      previous: 'pods.json.0a1b2c3d.tmp',
      fresh: '.tmp-ffffffffffff-pods.json',
      foreign: '.tmp-0a1b2c3d4e5f-other.json',
      state: 'pods.json',
    };
    for (const name of Object.values(names)) await writeFile(join(dir, name), '{');
    for (const name of [names.current, names.previous, names.foreign, names.state])
      await utimes(join(dir, name), old, old);
    await removeStaleTemporaries(file);
    t.strictSame((await readdir(dir)).sort(), [names.fresh, names.foreign, names.state].sort());
  },
);
