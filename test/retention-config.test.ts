import t from 'tap';
import { spawn } from 'node:child_process';
import { repoDir } from './support/stack.ts';

// `node retention/src/main.ts` with a bad configuration value exits 2 before connecting to
// anything, with a message naming the environment variable.

function run(env: Record<string, string>): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['retention/src/main.ts'], {
      cwd: repoDir,
      // A broker nobody listens on: a process that got past its configuration would hang, not exit.
      env: {
        ...(process.env as Record<string, string>),
        PODMORTEM_RETENTION_KAFKA_BROKERS: '127.0.0.1:1',
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

const cases: [string, string][] = [
  ['PODMORTEM_RETENTION_MAX_AGE_DAYS', 'a month'],
  ['PODMORTEM_RETENTION_TOTAL_BUDGET_BYTES', '-1'],
  ['PODMORTEM_RETENTION_NAMESPACE_BUDGET_BYTES', '10 GiB'],
  ['PODMORTEM_RETENTION_NAMESPACE_GRACE_S', 'soon'],
  ['PODMORTEM_RETENTION_EVENT_MAX_AGE_DAYS', '3'],
  ['PODMORTEM_RETENTION_DRY_RUN', 'maybe'],
];

for (const [variable, value] of cases) {
  t.test(`a bad ${variable} exits 2 naming it`, async (t) => {
    const { code, output } = await run({ [variable]: value });
    t.equal(code, 2, 'exit status 2');
    t.match(output, `podmortem-retention: configuration: ${variable}:`, 'a plain line naming the variable');
  });
}
