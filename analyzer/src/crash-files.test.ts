import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { removeStaleCrashFiles } from './crash-files.ts';

t.test("a killed analyzer's folders are removed, a live one's and foreign files are not", async (t) => {
  const workDir = await mkdtemp(join(tmpdir(), 'pm-an-stale-'));
  t.teardown(() => rm(workDir, { recursive: true, force: true }));
  // A pid that ran and was reaped.
  const dead = spawnSync('true').pid;
  const names = {
    mine: `podmortem-analyzer-${process.pid}-a1`,
    dead: `podmortem-analyzer-${dead}-b2`,
    live: `podmortem-analyzer-${process.ppid}-c3`,
    foreign: 'something-else',
  };
  for (const name of Object.values(names)) await mkdir(join(workDir, name, 'bin'), { recursive: true });
  t.equal(await removeStaleCrashFiles(workDir), 2);
  t.same((await readdir(workDir)).sort(), [names.foreign, names.live].sort());
});
