import t from 'tap';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { repoDir } from './support/stack.ts';

// The README's demo, end to end, as the suite's own test, on each store backend (--storage fs, the
// default, and s3): a real program crashes through the real kernel into podmortem, and the crash is found, analysed (its crashing function named from the
// program's debug info), downloaded (sha256 verified) and put in context through the query API and
// the CLI; the demo leaves core_pattern as it found it. core_pattern is
// read by the demo itself while it holds the core_pattern lock: other test files change it under
// that lock, so a read from here could see theirs.

const run = promisify(execFile);

for (const storage of ['fs', 's3'] as const)
  t.test(
    `${storage}: the demo finds and analyses the crash, verifies the dump and restores core_pattern`,
    async (t) => {
      const dir = mkdtempSync(join(tmpdir(), 'podmortem-demo-test-'));
      t.teardown(() => rmSync(dir, { recursive: true, force: true }));
      const summaryFile = join(dir, 'summary.json');

      // The README's command itself (`npm run demo` runs scripts/demo.sh).
      const args = ['--summary-json', summaryFile, ...(storage === 'fs' ? [] : ['--storage', storage])];
      const { stdout } = await run('bash', [join(repoDir, 'scripts/demo.sh'), ...args], {
        timeout: 600_000,
        maxBuffer: 16 * 1024 * 1024,
      });
      const summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as {
        crashId: string;
        storage: { backend: string; dump?: string };
        namespace: string;
        pod: string;
        signal: string;
        sha256: string;
        dumpFile: string;
        otlpLogRecord: boolean;
        analysis: { status?: string; title?: string; signature?: string; topFunctions: string[] };
        corePattern: { before: string; leftByAgent: string; after: string };
      };
      t.match(summary.crashId, /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-/, 'a UUIDv7 crash id');
      t.equal(summary.storage.backend, storage, 'on the backend asked for (fs without the option)');
      t.match(
        summary.storage.dump,
        storage === 'fs' ? /^\/.*\.core\.zst$/ : /^s3:\/\/podmortem-demo-[0-9a-f]{8}\/shop\/.*\.core\.zst$/,
        'the dump found where that backend keeps it',
      );
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
      t.equal(summary.analysis.status, 'ok', 'the analysis is merged into the crash, complete');
      t.match(
        summary.analysis.title,
        /^SIGSEGV in price_order \(order-parser\.c:\d+\)$/,
        'its title names the signal, the crashing function and its source line',
      );
      t.match(summary.analysis.signature, /^[0-9a-f]{32}$/, 'and it has a signature');
      t.same(
        summary.analysis.topFunctions.slice(0, 2),
        ['price_order', 'main'],
        'the crashing thread: price_order called by main',
      );
      const analysed = stdout.slice(stdout.indexOf('Analysed:'));
      t.match(analysed, /title +SIGSEGV in price_order \(order-parser\.c:\d+\)/, 'the demo shows the title');
      t.match(
        analysed,
        /#0 +price_order at \S*order-parser\.c:\d+/,
        'and the top frame with its source line',
      );
      const context = stdout.slice(stdout.indexOf(`podmortem context ${summary.crashId}`));
      t.match(
        context,
        /memory: min \S+ +max \S+ +last \S+ +\(\d+ points\)/,
        'the context shows the pod’s memory',
      );
      t.match(context, /logs \([1-9]\d* lines from logs-\*\)/, 'the context shows the pod’s log lines');
      t.match(context, /order A-1004: customer 999/, 'among them the last line before the crash');
      t.match(context, /other crashes of the pod \(0\)/, 'a new pod: no crash of another run in its context');
      t.equal(summary.corePattern.leftByAgent, summary.corePattern.before, 'the agent restored core_pattern');
      t.equal(summary.corePattern.after, summary.corePattern.before, 'core_pattern as it was after the demo');
    },
  );

t.test('--storage with another value is refused, naming the choices', async (t) => {
  const refused = await run('bash', [join(repoDir, 'scripts/demo.sh'), '--storage', 'nfs']).then(
    () => undefined,
    (e: unknown) => e as { code: number; stderr: string },
  );
  t.equal(refused?.code, 2);
  t.equal(refused?.stderr.trim().split('\n').at(-1), '--storage must be fs or s3, not "nfs"');
});
