import t from 'tap';
import { execFile } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort } from './support/ports.ts';
import { repoDir, stack } from './support/stack.ts';

// The stack's own entry point, on a stack of its own (a private folder and ports, the main
// stack's resolved jars linked in) so that `down` can be tested without stopping the servers
// other tests use.

const run = promisify(execFile);
const script = join(repoDir, 'deploy/local/stack.sh');

/** Processes whose command line names the folder: what `down` must leave none of. */
function processesNaming(dir: string): string[] {
  const found: string[] = [];
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ');
      if (cmdline.includes(dir)) found.push(`${pid}: ${cmdline.slice(0, 120)}`);
    } catch {
      // the process ended while we looked
    }
  }
  return found;
}

t.test('up twice: the second does nothing and says so; down leaves no process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podmortem-stack-'));
  for (const c of ['kafka', 'elasticsearch']) {
    mkdirSync(join(dir, c));
    symlinkSync(join(stack.stackDir, c, 'lib'), join(dir, c, 'lib'));
  }
  // The weed binary the main stack built (minutes of Go), with its marker of the version built.
  mkdirSync(join(dir, 'seaweedfs'));
  symlinkSync(join(stack.stackDir, 'seaweedfs', 'bin'), join(dir, 'seaweedfs', 'bin'));
  const env = {
    ...process.env,
    PODMORTEM_STACK_DIR: dir,
    PODMORTEM_KAFKA_PORT: String(await freePort()),
    PODMORTEM_KAFKA_CONTROLLER_PORT: String(await freePort()),
    PODMORTEM_ES_PORT: String(await freePort()),
    PODMORTEM_ES_TRANSPORT_PORT: String(await freePort()),
    PODMORTEM_ES_HEAP: '512m',
    PODMORTEM_PROMETHEUS_PORT: String(await freePort()),
    PODMORTEM_S3_PORT: String(await freePort()),
    PODMORTEM_S3_GRPC_PORT: String(await freePort()),
    PODMORTEM_SEAWEEDFS_MASTER_PORT: String(await freePort()),
    PODMORTEM_SEAWEEDFS_MASTER_GRPC_PORT: String(await freePort()),
    PODMORTEM_SEAWEEDFS_VOLUME_PORT: String(await freePort()),
    PODMORTEM_SEAWEEDFS_VOLUME_GRPC_PORT: String(await freePort()),
    PODMORTEM_SEAWEEDFS_FILER_PORT: String(await freePort()),
    PODMORTEM_SEAWEEDFS_FILER_GRPC_PORT: String(await freePort()),
  };
  const stackCmd = (...args: string[]) => run('bash', [script, ...args], { env, timeout: 300_000 });
  t.teardown(async () => {
    await stackCmd('down').catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  });

  const first = await stackCmd('up');
  t.match(first.stdout, /kafka: .*ready/, 'kafka started');
  t.match(first.stdout, /elasticsearch: .*ready/, 'elasticsearch started');
  t.match(first.stdout, /prometheus: .*ready/, 'prometheus started');
  t.match(first.stdout, /seaweedfs: .*ready/, 'seaweedfs started');
  t.notMatch(first.stdout, /building weed/, 'weed not built again');

  const second = await stackCmd('up');
  for (const c of ['kafka', 'elasticsearch', 'prometheus', 'seaweedfs']) {
    t.match(
      second.stdout,
      new RegExp(`${c}: already running \\(pid \\d+\\), nothing to do`),
      `${c} left alone`,
    );
  }
  t.notMatch(second.stdout, /starting|ready after/, 'nothing was started the second time');

  const status = await stackCmd('status');
  t.match(status.stdout, /kafka: running .*version 4\.\d+\.\d+/);
  t.match(status.stdout, /elasticsearch: running .*version 9\.\d+\.\d+/);
  t.match(status.stdout, /prometheus: running .*version 2\.\d+\.\d+/);
  t.match(status.stdout, /seaweedfs: running .*\(S3\), version \d+\.\d+/);
  t.ok(processesNaming(dir).length >= 4, 'the four servers run from the private folder');

  await stackCmd('down');
  t.same(processesNaming(dir), [], 'no process of the stack is left');
  const after = await stackCmd('status').catch((err: unknown) => err as { code: number; stdout: string });
  t.equal((after as { code?: number }).code, 3, 'status exits 3 when stopped');
  t.match((after as { stdout: string }).stdout, /kafka: stopped/);
});

t.test('bad commands and components are refused with usage', async (t) => {
  for (const args of [['start'], ['up', 'redis']]) {
    const err = (await run('bash', [script, ...args]).catch((e: unknown) => e)) as {
      code: number;
      stderr: string;
    };
    t.equal(err.code, 2, args.join(' '));
    t.match(err.stderr, /usage|unknown component 'redis'/);
  }
  const help = await run('bash', [script, '--help']);
  t.match(help.stdout, /usage: npm run stack -- <command>/);
});
