import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { createLogger } from '@podmortem/contract/runtime';
import { KernelSettings } from './kernel-settings.ts';

// The logic of backup and restore, on a folder standing in for /proc/sys/kernel (the real sysctl
// is exercised by test/collector-e2e.test.ts).

const logger = createLogger('test', { level: 'silent' });

function setup(t: { teardown: (fn: () => void) => void }) {
  const dir = mkdtempSync(join(tmpdir(), 'pm-sysctl-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const sysctlDir = join(dir, 'kernel');
  const stateDir = join(dir, 'state');
  mkdirSync(sysctlDir);
  writeFileSync(join(sysctlDir, 'core_pattern'), 'core\n');
  writeFileSync(join(sysctlDir, 'core_pipe_limit'), '0\n');
  const make = (corePattern = '|/opt/pm/handler %P') =>
    new KernelSettings({ sysctlDir, stateDir, corePattern, corePipeLimit: 16, logger });
  const read = (name: string) => readFileSync(join(sysctlDir, name), 'utf8').replace(/\n$/, '');
  return { sysctlDir, stateDir, make, read };
}

t.test('start applies the settings and shutdown restores the originals', async (t) => {
  const { make, read } = setup(t);
  const settings = make();
  await settings.start();
  t.equal(read('core_pattern'), '|/opt/pm/handler %P');
  t.equal(read('core_pipe_limit'), '16');
  await settings.shutdown();
  t.equal(read('core_pattern'), 'core');
  t.equal(read('core_pipe_limit'), '0');
  t.notOk(existsSync(settings.backupPath('core_pattern')), 'the backup is gone once restored');
});

t.test('an agent restarted after SIGKILL restores the original, not its own pattern', async (t) => {
  const { make, read } = setup(t);
  await make().start(); // killed: never shut down
  t.equal(read('core_pattern'), '|/opt/pm/handler %P');
  const second = make('|/opt/pm/handler-v2 %P');
  await second.start();
  t.equal(read('core_pattern'), '|/opt/pm/handler-v2 %P');
  await second.shutdown();
  t.equal(read('core_pattern'), 'core');
  t.equal(read('core_pipe_limit'), '0');
});

t.test('shutdown is safe before start and safe twice', async (t) => {
  const { make, read } = setup(t);
  const settings = make();
  await settings.shutdown();
  t.equal(read('core_pattern'), 'core', 'nothing touched before start');
  await settings.start();
  await settings.shutdown();
  writeFileSync(join(settings.backupPath('core_pattern') + '-unrelated'), 'x');
  await settings.shutdown();
  t.equal(read('core_pattern'), 'core');
});

t.test('a value the kernel does not keep as written is an error naming the setting', async (t) => {
  const { make, sysctlDir } = setup(t);
  // A folder where the file should be: the write fails as a read-only sysctl would.
  rmSync(join(sysctlDir, 'core_pattern'));
  mkdirSync(join(sysctlDir, 'core_pattern'));
  await t.rejects(make().start(), { code: 'PM_ERR_SYSCTL', message: /kernel\.core_pattern/ });
});
