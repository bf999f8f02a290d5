import t from 'tap';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './support/ports.ts';
import { repoDir } from './support/stack.ts';

const run = promisify(execFile);
const ephemeralLow = Number(
  readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0],
);

/** Ports another process gets from freePort while this one holds its own. */
async function portsOfAnotherProcess(count: number): Promise<number[]> {
  const script = `import { freePort } from './test/support/ports.ts';
const ports = [];
for (let i = 0; i < ${count}; i++) ports.push(await freePort());
console.log(JSON.stringify(ports));`;
  const { stdout } = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: repoDir });
  return JSON.parse(stdout) as number[];
}

t.test('a port is below the ephemeral range, so no listen(0) of another process can take it', async (t) => {
  for (let i = 0; i < 20; i++) {
    const port = await freePort();
    t.ok(port >= 20_000 && port < ephemeralLow, `${port} below ${ephemeralLow}`);
  }
});

t.test('two processes are never handed the same port; locks go with the process', async (t) => {
  const mine = new Set<number>();
  for (let i = 0; i < 300; i++) mine.add(await freePort());
  t.equal(mine.size, 300, 'one process gets distinct ports');
  const theirs = await portsOfAnotherProcess(300);
  t.same(
    theirs.filter((p) => mine.has(p)),
    [],
    'none of the other process’s ports is one this process holds',
  );
  t.notOk(
    theirs.some((p) => existsSync(join(tmpdir(), 'podmortem-ports', String(p)))),
    'the other process’s locks were removed when it exited',
  );
  t.ok(
    [...mine].every((p) => existsSync(join(tmpdir(), 'podmortem-ports', String(p)))),
    'this process still holds its own',
  );
});

t.test('a port something else listens on is not handed out', async (t) => {
  const { createServer } = await import('node:net');
  const taken: import('node:net').Server[] = [];
  t.teardown(() => taken.forEach((s) => s.close()));
  // Occupy a block of the range with listeners podmortem did not reserve, then ask for ports.
  const occupied = new Set<number>();
  for (let port = 20_000; port < 20_200; port++) {
    const server = createServer();
    await new Promise<void>((resolve) => {
      server.once('error', () => resolve());
      server.listen(port, '127.0.0.1', () => {
        occupied.add(port);
        taken.push(server);
        resolve();
      });
    });
  }
  const handed: number[] = [];
  for (let i = 0; i < 400; i++) handed.push(await freePort());
  t.ok(occupied.size > 150, 'most of the block could be occupied');
  t.same(
    handed.filter((p) => occupied.has(p)),
    [],
    'no port of the occupied block was handed out',
  );
});
