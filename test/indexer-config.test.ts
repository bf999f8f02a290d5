import t from 'tap';
import { spawn } from 'node:child_process';
import { repoDir } from './support/stack.ts';

// `node indexer/src/main.ts` with a bad configuration value exits non-zero before connecting to
// anything, with a message naming the environment variable.

function run(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['indexer/src/main.ts'], {
      cwd: repoDir,
      // Servers nobody listens on: a process that got past its configuration would hang, not exit.
      env: {
        ...(process.env as Record<string, string>),
        PODMORTEM_INDEXER_KAFKA_BROKERS: '127.0.0.1:1',
        PODMORTEM_INDEXER_ELASTICSEARCH_URL: 'http://127.0.0.1:1',
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => (output += c.toString()));
    child.stderr.on('data', (c: Buffer) => (output += c.toString()));
    child.once('exit', (code) => resolve({ code, output }));
  });
}

const cases: [string, Record<string, string>][] = [
  ['PODMORTEM_INDEXER_BULK_MAX_RECORDS', { PODMORTEM_INDEXER_BULK_MAX_RECORDS: 'lots' }],
  ['PODMORTEM_INDEXER_ELASTICSEARCH_URL', { PODMORTEM_INDEXER_ELASTICSEARCH_URL: '127.0.0.1:9200' }],
  ['PODMORTEM_INDEXER_INDEX_ALIAS', { PODMORTEM_INDEXER_INDEX_ALIAS: 'Crashes!' }],
  ['PODMORTEM_INDEXER_FROM_BEGINNING', { PODMORTEM_INDEXER_FROM_BEGINNING: 'maybe' }],
  ['PODMORTEM_INDEXER_HEARTBEAT_INTERVAL_MS', { PODMORTEM_INDEXER_HEARTBEAT_INTERVAL_MS: '15000' }],
];

for (const [variable, env] of cases) {
  t.test(`a bad ${variable} exits 2 naming it`, async (t) => {
    const { code, output } = await run(env);
    t.equal(code, 2, 'exit status 2');
    t.match(output, `podmortem-indexer: configuration: ${variable}:`, 'a plain line naming the variable');
    t.equal(output.trim().split('\n').length, 1, 'that line only: nothing started, nothing logged');
  });
}
