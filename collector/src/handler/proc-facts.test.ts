import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, realpathSync } from 'node:fs';
import t from 'tap';
import { parseCmdline, parseStatus, readProcFacts } from './proc-facts.ts';

t.test(
  'a live process: cgroup, command line, comm, exe, namespace pids, parent; never its environment',
  async (t) => {
    const child = spawn('sleep', ['30'], { env: { PODMORTEM_TEST_SECRET: 'hunter2' }, stdio: 'ignore' });
    t.teardown(() => child.kill('SIGKILL'));
    await once(child, 'spawn');
    const pid = child.pid ?? 0;
    const facts = await readProcFacts(pid, { tid: pid, comm: 'sleep' });
    t.equal(facts.cgroup, readFileSync(`/proc/${pid}/cgroup`, 'utf8'));
    t.same(facts.cmdline, ['sleep', '30']);
    t.equal(facts.comm, 'sleep');
    t.equal(facts.exe, realpathSync('/usr/bin/sleep'));
    t.same(facts.nsPids, [pid]);
    t.equal(facts.ppid, process.pid);
    t.notMatch(JSON.stringify(facts), /hunter2/);
  },
);

t.test('a process already gone, and a pid now used by another process', async (t) => {
  const child = spawn('true');
  await once(child, 'exit');
  await t.rejects(
    readProcFacts(child.pid ?? 0),
    /process \d+ had exited before the handler read \/proc\/\d+/,
  );
  await t.rejects(
    readProcFacts(process.pid, { tid: process.pid, comm: 'crasher' }),
    /is now another process .* the kernel said "crasher"/,
  );
});

t.test('parsing: NUL-separated args, NSpid and PPid lines', async (t) => {
  t.same(parseCmdline(Buffer.from('a\0b c\0\0')), ['a', 'b c', '']);
  t.same(parseStatus('Name:\tx\nPPid:\t12\nNSpid:\t100\t7\t1\n'), { nsPids: [100, 7, 1], ppid: 12 });
  t.same(parseStatus('Name:\tx\n'), { nsPids: [] });
});
