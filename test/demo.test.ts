import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoDir } from './support/stack.ts';

// The README's demo, end to end, as the suite's own test: a real program crashes through the real
// kernel into podmortem, and the crash is found, downloaded (sha256 verified) and put in context
// through the query API and the CLI; the demo leaves core_pattern as it found it.

const run = promisify(execFile);

t.test('the demo finds the crash, verifies the dump and restores core_pattern', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'podmortem-demo-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const summaryFile = join(dir, 'summary.json');
  const patternBefore = readFileSync('/proc/sys/kernel/core_pattern', 'utf8');

  const { stdout } = await run(
    process.execPath,
    [
      '--disable-warning=TimeoutNegativeWarning',
      join(repoDir, 'scripts/demo.ts'),
      '--summary-json',
      summaryFile,
    ],
    { timeout: 600_000, maxBuffer: 16 * 1024 * 1024 },
  );
  const summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as {
    crashId: string;
    namespace: string;
    pod: string;
    signal: string;
    sha256: string;
    dumpFile: string;
    otlpLogRecord: boolean;
  };
  t.match(summary.crashId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/, 'a UUIDv7 crash id');
  t.equal(summary.namespace, 'shop');
  t.match(summary.pod, /^order-parser-/);
  t.equal(summary.signal, 'SIGSEGV');
  t.equal(
    createHash('sha256').update(readFileSync(summary.dumpFile)).digest('hex'),
    summary.sha256,
    'the downloaded core has the sha256 the event records',
  );
  t.equal(readFileSync(summary.dumpFile).subarray(0, 4).toString('latin1'), '\x7fELF', 'an ELF core');
  t.ok(summary.otlpLogRecord, 'the crash reached the OTLP receiver as a log record');
  t.match(stdout, new RegExp(`crash +${summary.crashId}`), 'the summary names the crash');
  t.match(stdout, /podmortem context/, 'the context step ran');
  t.equal(readFileSync('/proc/sys/kernel/core_pattern', 'utf8'), patternBefore, 'core_pattern as it was');
});
