import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { leaksIn } from './attack-count.ts';
import { stack } from './stack.ts';

// The schema fuzzer of the test command: schemathesis from PyPI, pinned, installed with pip into a
// virtual environment in the stack folder (kept between runs, like the stack's jars), and run on
// the OpenAPI document against a live query API. Its NDJSON report is read here: every request
// and answer the fuzzer exchanged, and the outcome of every check on each.

export const SCHEMATHESIS_VERSION = '4.32.5';

const venv = join(stack.stackDir, `schemathesis-${SCHEMATHESIS_VERSION}`);
const installed = join(venv, '.installed');
export const schemathesisBin = join(venv, 'bin', 'schemathesis');

interface Ran {
  code: number | null;
  output: string;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv, cwd?: string): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    const chunks: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => chunks.push(c));
    child.stderr.on('data', (c: Buffer) => chunks.push(c));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, output: Buffer.concat(chunks).toString('utf8') }));
  });
}

/** Installs the pinned schemathesis once (a marker file says the install finished). */
export async function ensureSchemathesis(): Promise<string> {
  if (existsSync(installed)) return schemathesisBin;
  // A half-made environment (an install killed midway) is made again from nothing.
  rmSync(venv, { recursive: true, force: true });
  mkdirSync(stack.stackDir, { recursive: true });
  const steps: [string, string[]][] = [
    ['python3', ['-m', 'venv', venv]],
    [
      join(venv, 'bin', 'pip'),
      [
        'install',
        '--quiet',
        '--disable-pip-version-check',
        '--no-input',
        `schemathesis==${SCHEMATHESIS_VERSION}`,
      ],
    ],
  ];
  for (const [cmd, args] of steps) {
    const r = await run(cmd, args, { ...process.env, PIP_NO_INPUT: '1' });
    if (r.code !== 0) throw new Error(`${cmd} ${args.join(' ')} failed (${r.code}):\n${r.output}`);
  }
  writeFileSync(installed, `schemathesis ${SCHEMATHESIS_VERSION}\n`);
  return schemathesisBin;
}

/** Statuses that reject a request breaking the schema (schemathesis' list, and 413, 414, 431). */
const REJECTIONS = [400, 401, 403, 404, 405, 406, 409, 413, 414, 415, 422, 428, 429, 431];

export interface FuzzRun {
  /** schemathesis' exit code and console output, for the failure message. */
  code: number | null;
  output: string;
  requests: number;
  serverErrors: string[];
  /** Failed checks by check name, each with the request that failed it. */
  failures: Map<string, string[]>;
  /** Requests without an answer within the request timeout. */
  hangs: string[];
  /** Errors of the run itself (an invalid schema of an operation…). */
  errors: string[];
  leaks: string[];
}

interface Interaction {
  request: { method: string; uri: string };
  response?: { status_code: number; content?: { $base64?: string; string?: string } } | null;
}
interface Check {
  name: string;
  status: string;
  failure_info?: { failure?: { code?: string; title?: string; message?: string } };
}
interface ScenarioFinished {
  status: string;
  recorder: {
    label: string;
    checks?: Record<string, Check[]>;
    interactions?: Record<string, Interaction>;
  };
}
interface NonFatalError {
  label?: string;
  value?: { type?: string; message?: string };
}

function bodyOf(i: Interaction): Buffer {
  const c = i.response?.content;
  if (c?.$base64 !== undefined) return Buffer.from(c.$base64, 'base64');
  return Buffer.from(c?.string ?? '', 'utf8');
}

export interface FuzzOptions {
  url: string;
  token?: string;
  /** Bytes that must appear in no answer to this caller. */
  secrets: Buffer[];
  workDir: string;
  maxExamples: number;
  maxTimeS: number;
  seed: number;
}

export async function fuzz(schema: string, o: FuzzOptions): Promise<FuzzRun> {
  const reportDir = join(o.workDir, 'report');
  mkdirSync(reportDir, { recursive: true });
  const configFile = join(o.workDir, 'schemathesis.toml');
  writeFileSync(
    configFile,
    `[checks.negative_data_rejection]\nexpected-statuses = [${REJECTIONS.map((s) => `"${s}"`).join(', ')}]\n`,
  );
  const args = [
    '--config-file',
    configFile,
    'run',
    schema,
    '--url',
    o.url,
    ...(o.token === undefined ? [] : ['--header', `Authorization: Bearer ${o.token}`]),
    '--checks',
    'all',
    // Schema-valid values the API refuses by a rule across parameters (`to` before `from`, a
    // cursor it did not hand out, too many buckets): a 400 is the right answer there.
    '--exclude-checks',
    'positive_data_acceptance',
    '--max-examples',
    String(o.maxExamples),
    '--max-time',
    String(o.maxTimeS),
    '--request-timeout',
    '15',
    '--workers',
    '1',
    '--seed',
    String(o.seed),
    '--no-color',
    '--report',
    'ndjson',
    '--report-dir',
    reportDir,
  ];
  // Run in the work folder: schemathesis keeps a cache of what failed in .schemathesis/ there,
  // never in the repository, and each run starts without one.
  const r = await run(
    await ensureSchemathesis(),
    args,
    { ...process.env, SCHEMATHESIS_TELEMETRY: 'false' },
    o.workDir,
  );
  const result: FuzzRun = {
    code: r.code,
    output: r.output,
    requests: 0,
    serverErrors: [],
    failures: new Map(),
    hangs: [],
    errors: [],
    leaks: [],
  };
  for (const file of readdirSync(reportDir).filter((f) => f.endsWith('.ndjson'))) {
    for (const line of readFileSync(join(reportDir, file), 'utf8').split('\n')) {
      if (line.trim() === '') continue;
      const event = JSON.parse(line) as {
        ScenarioFinished?: ScenarioFinished;
        NonFatalError?: NonFatalError;
      };
      if (event.NonFatalError) {
        const e = event.NonFatalError;
        const message = e.value?.message ?? '';
        const what = `${e.label ?? '?'}: ${e.value?.type ?? 'error'}: ${message.split('\n').slice(0, 6).join(' ')}`;
        if (/timed? ?out/i.test(message)) result.hangs.push(what);
        else result.errors.push(what);
      }
      const s = event.ScenarioFinished;
      if (!s) continue;
      for (const i of Object.values(s.recorder.interactions ?? {})) {
        result.requests++;
        const what = `${i.request.method} ${i.request.uri.slice(0, 300)}`;
        const status = i.response?.status_code;
        if (status === undefined) {
          result.hangs.push(`${what}: no answer`);
          continue;
        }
        const body = bodyOf(i);
        if (status >= 500) result.serverErrors.push(`${what} → ${status} ${body.toString('utf8', 0, 300)}`);
        const leaked = leaksIn(body, o.secrets);
        if (leaked) result.leaks.push(`${what} → ${status} holds ${leaked.toString('latin1', 0, 40)}`);
      }
      for (const checks of Object.values(s.recorder.checks ?? {})) {
        for (const c of checks) {
          // 'error': the check could not run (an invalid response schema), a failure too.
          if (c.status !== 'failure' && c.status !== 'error') continue;
          const f = c.failure_info?.failure;
          const list = result.failures.get(c.name) ?? [];
          if (list.length < 5)
            list.push(`${s.recorder.label}: ${f?.code ?? c.status} ${f?.message?.split('\n')[0] ?? ''}`);
          result.failures.set(c.name, list);
        }
      }
    }
  }
  return result;
}
