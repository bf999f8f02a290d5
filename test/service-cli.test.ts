import t from 'tap';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TObject } from '@sinclair/typebox';
import { envName } from '@podmortem/contract/runtime';
import { AnalyzerConfigSchema, CONFIG_PREFIX as ANALYZER_PREFIX } from '../analyzer/src/config.ts';
import { CollectorConfigSchema, ENV_PREFIX as COLLECTOR_PREFIX } from '../collector/src/agent/config.ts';
import { HANDLER_CONFIG_KEYS } from '../collector/src/handler-config.ts';
import { CONFIG_PREFIX as INDEXER_PREFIX, IndexerConfigSchema } from '../indexer/src/config.ts';
import { ConfigSchema as ApiConfigSchema, CONFIG_PREFIX as API_PREFIX } from '../query-api/src/config.ts';
import { CONFIG_PREFIX as RETENTION_PREFIX, RetentionConfigSchema } from '../retention/src/config.ts';
import { repoDir, stack } from './support/stack.ts';

// Every service's real entry, run as `node <main>`: --version and --help answer and exit 0 without
// reading the configuration; any other argument exits 2; a variable of the service's prefix it
// does not know is logged as a warning naming the closest setting; a bad value exits 2 with one
// line naming the variable and, for a choice, what it may be.
//
// The warning is checked with a bad value beside it: the service logs its warnings before it
// reads its configuration, so it warns, then exits 2 on the bad value before it connects to
// anything, whatever runs on this machine. That the service carries on after the warning is
// checked once, with the query API, which starts without Kafka.

const { version } = JSON.parse(readFileSync(join(repoDir, 'package.json'), 'utf8')) as { version: string };

interface Service {
  name: string;
  main: string;
  schema: TObject;
  prefix: string;
  /** What every run of it is given, so that only the variable under test is bad. */
  base: Record<string, string>;
  /** [variable, value, the message after `<VARIABLE>: `] */
  bad: [string, string, string][];
  /** [misspelt variable, the setting it is closest to] */
  misspelt: [string, string];
}

const URL_MESSAGE = 'must be an http or https URL (http://host:port)';

const services: Service[] = [
  {
    name: 'podmortem-collector',
    main: 'collector/src/agent/main.ts',
    schema: CollectorConfigSchema,
    prefix: COLLECTOR_PREFIX,
    base: { PODMORTEM_COLLECTOR_NODE_NAME: 'node-a' },
    bad: [
      ['PODMORTEM_COLLECTOR_HANDLER_MODULE_CAPTURE', 'maybe', 'must be one of copy, off, got "maybe"'],
      ['PODMORTEM_COLLECTOR_HANDLER_COMPRESSION', 'gzip', 'must be one of zstd, none, got "gzip"'],
      ['PODMORTEM_COLLECTOR_MANAGE_CORE_PATTERN', 'yes', 'must be true or false (or 1 or 0), got "yes"'],
      ['PODMORTEM_COLLECTOR_OTLP_ENDPOINT', 'http://', URL_MESSAGE],
    ],
    misspelt: ['PODMORTEM_COLLECTOR_SPOOL_DIRS', 'PODMORTEM_COLLECTOR_SPOOL_DIR'],
  },
  {
    name: 'podmortem-indexer',
    main: 'indexer/src/main.ts',
    schema: IndexerConfigSchema,
    prefix: INDEXER_PREFIX,
    base: {},
    bad: [
      ['PODMORTEM_INDEXER_ELASTICSEARCH_URL', '127.0.0.1:9200', URL_MESSAGE],
      ['PODMORTEM_INDEXER_FROM_BEGINNING', 'maybe', 'must be true or false (or 1 or 0), got "maybe"'],
    ],
    misspelt: ['PODMORTEM_INDEXER_KAFKA_BROKER', 'PODMORTEM_INDEXER_KAFKA_BROKERS'],
  },
  {
    name: 'podmortem-analyzer',
    main: 'analyzer/src/main.ts',
    schema: AnalyzerConfigSchema,
    prefix: ANALYZER_PREFIX,
    base: {},
    bad: [
      ['PODMORTEM_ANALYZER_STORAGE_S3_CHECKSUM', 'md5', 'must be one of SHA256, off, got "md5"'],
      ['PODMORTEM_ANALYZER_STORAGE_BACKEND', 'nfs', 'must be one of fs, s3, got "nfs"'],
      ['PODMORTEM_ANALYZER_CONCURRENCY', '0', 'must be >= 1'],
    ],
    misspelt: ['PODMORTEM_ANALYZER_UNWINDER_COMAND', 'PODMORTEM_ANALYZER_UNWINDER_COMMAND'],
  },
  {
    name: 'podmortem-query-api',
    main: 'query-api/src/main.ts',
    schema: ApiConfigSchema,
    prefix: API_PREFIX,
    base: {},
    bad: [
      ['PODMORTEM_API_STORAGE_BACKEND', 'nfs', 'must be one of fs, s3, got "nfs"'],
      ['PODMORTEM_API_LOGS_FIELDS', 'json', 'must be one of ecs, otel, got "json"'],
      ['PODMORTEM_API_DOCS', 'maybe', 'must be true or false (or 1 or 0), got "maybe"'],
      ['PODMORTEM_API_ELASTICSEARCH_URL', 'not-a-url', URL_MESSAGE],
      ['PODMORTEM_API_PROMETHEUS_URL', '::', URL_MESSAGE],
      ['PODMORTEM_API_GRAFANA_URL', 'grafana:3000', `${URL_MESSAGE}, or empty`],
      ['PODMORTEM_API_OTLP_TRACES_ENDPOINT', 'otel:4318/v1/traces', `${URL_MESSAGE}, or empty`],
    ],
    misspelt: ['PODMORTEM_API_ELASTICSEARCH_ULR', 'PODMORTEM_API_ELASTICSEARCH_URL'],
  },
  {
    name: 'podmortem-retention',
    main: 'retention/src/main.ts',
    schema: RetentionConfigSchema,
    prefix: RETENTION_PREFIX,
    base: {},
    bad: [
      ['PODMORTEM_RETENTION_DRY_RUN', 'maybe', 'must be true or false (or 1 or 0), got "maybe"'],
      ['PODMORTEM_RETENTION_STORAGE_BACKEND', 'nfs', 'must be one of fs, s3, got "nfs"'],
    ],
    misspelt: ['PODMORTEM_RETENTION_MAX_AGE_DAY', 'PODMORTEM_RETENTION_MAX_AGE_DAYS'],
  },
];

// A home of its own: nothing of the machine's (a kubeconfig, say) reaches the services.
const home = mkdtempSync(join(tmpdir(), 'pm-service-cli-'));
t.teardown(() => rmSync(home, { recursive: true, force: true }));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs `main` to its exit with only `env` (and PATH, HOME) in its environment. */
function run(main: string, args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [join(repoDir, main), ...args], {
      cwd: repoDir,
      env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: home, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** A default as --help shows it: a shell word, quoted when it needs to be. */
function shown(value: unknown): string {
  const text = Array.isArray(value) ? value.join(',') : String(value);
  return /^[A-Za-z0-9_.,:/@%+=-]+$/.test(text) ? text : `'${text.replaceAll("'", `'\\''`)}'`;
}

const STACK_FRAME = /^\s+at /m;

for (const s of services) {
  t.test(`${s.name}: --version`, async (t) => {
    const r = await run(s.main, ['--version'], s.base);
    t.same(r, { code: 0, stdout: `${s.name} ${version}\n`, stderr: '' });
  });

  t.test(`${s.name}: --help lists every setting with its default`, async (t) => {
    // A bad value and a misspelt variable change nothing: --help reads no configuration.
    const [variable, value] = s.bad[0] ?? ['', ''];
    // -h is the same (contract/src/runtime/service.test.ts).
    const r = await run(s.main, ['--help'], { ...s.base, [variable]: value, [s.misspelt[0]]: 'x' });
    t.equal(r.code, 0, 'exit status 0');
    t.equal(r.stderr, '', 'nothing on stderr');
    const lines = r.stdout.split('\n');
    t.equal(lines[0], `${s.name} ${version}`);
    t.ok(lines.includes(`Usage: node ${s.main} [--help | --version]`), 'the usage line');
    t.notOk(
      lines.some((l) => l.startsWith('{')),
      'no log line: nothing started, no warning',
    );
    for (const [key, prop] of Object.entries(s.schema.properties)) {
      const name = envName(s.prefix, key);
      const expected =
        prop.default === undefined ? `  ${name} (required)` : `  ${name}=${shown(prop.default)}`;
      t.ok(lines.includes(expected), expected);
    }
  });

  t.test(`${s.name}: an unknown argument exits 2 with one line naming it`, async (t) => {
    const r = await run(s.main, ['--verbose'], s.base);
    t.same(r, { code: 2, stdout: '', stderr: `${s.name}: unknown argument "--verbose"; see --help\n` });
  });

  t.test(`${s.name}: a misspelt variable is a warning naming the closest setting`, async (t) => {
    const [variable, closest] = s.misspelt;
    const [badName, badValue, badMessage] = s.bad[0] ?? ['', '', ''];
    // Another service's variable, misspelt too, is that service's business.
    const other = s.prefix === INDEXER_PREFIX ? 'PODMORTEM_API_PROTT' : 'PODMORTEM_INDEXER_TOPICC';
    const r = await run(s.main, [], { ...s.base, [variable]: 'x', [other]: 'x', [badName]: badValue });
    t.equal(r.code, 2, 'then exits on the bad value');
    t.equal(r.stderr, `${s.name}: configuration: ${badName}: ${badMessage}\n`);
    const lines = r.stdout.split('\n').filter(Boolean);
    t.equal(lines.length, 1, 'one warning, once');
    t.match(JSON.parse(lines[0] ?? '{}'), {
      level: 40,
      name: s.name,
      variable,
      closest,
      msg: `${variable} is not a setting of ${s.name}; did you mean ${closest}?`,
    });
  });

  for (const [variable, value, message] of s.bad)
    t.test(`${s.name}: ${variable}=${JSON.stringify(value)} exits 2 with one line`, async (t) => {
      const r = await run(s.main, [], { ...s.base, [variable]: value });
      t.equal(r.code, 2, 'exit status 2');
      t.equal(r.stderr, `${s.name}: configuration: ${variable}: ${message}\n`);
      t.equal(r.stdout, '', 'nothing started, nothing logged');
      t.notMatch(r.stdout + r.stderr, STACK_FRAME, 'no stack trace');
    });
}

t.test('after the warning, the service runs: the query API serves, and stops on SIGTERM', async (t) => {
  const storage = mkdtempSync(join(tmpdir(), 'pm-service-cli-storage-'));
  t.teardown(() => rmSync(storage, { recursive: true, force: true }));
  const child = spawn(process.execPath, [join(repoDir, 'query-api/src/main.ts')], {
    cwd: repoDir,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: home,
      PODMORTEM_API_HOST: '127.0.0.1',
      PODMORTEM_API_PORT: '0',
      PODMORTEM_API_OPS_HOST: '127.0.0.1',
      PODMORTEM_API_OPS_PORT: '0',
      PODMORTEM_API_STORAGE_ROOT: storage,
      PODMORTEM_API_ELASTICSEARCH_URL: stack.elasticsearchUrl,
      PODMORTEM_API_PROMETHEUS_URL: stack.prometheusUrl,
      PODMORTEM_API_KAFKA_BROKER: stack.kafkaBrokers.join(','),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  process.once('exit', () => child.kill('SIGKILL'));
  const lines: Record<string, unknown>[] = [];
  let stderr = '';
  let pending = '';
  const listening = new Promise<void>((resolve) => {
    child.stdout.on('data', (c: Buffer) => {
      pending += c.toString();
      const complete = pending.split('\n');
      pending = complete.pop() ?? '';
      for (const line of complete.filter(Boolean)) {
        lines.push(JSON.parse(line) as Record<string, unknown>);
        if (lines.at(-1)?.msg === 'query API listening') resolve();
      }
    });
  });
  child.stderr.on('data', (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', resolve));
  await Promise.race([listening, exited]);
  child.kill('SIGTERM');
  t.equal(await exited, 0, 'a clean stop');
  t.equal(stderr, '');
  t.match(lines[0], {
    level: 40,
    variable: 'PODMORTEM_API_KAFKA_BROKER',
    closest: 'PODMORTEM_API_KAFKA_BROKERS',
    msg: 'PODMORTEM_API_KAFKA_BROKER is not a setting of podmortem-query-api; did you mean PODMORTEM_API_KAFKA_BROKERS?',
  });
  t.equal(lines.filter((l) => l.level === 40).length, 1, 'warned once');
  t.ok(
    lines.some((l) => l.msg === 'query API listening'),
    'it served after the warning',
  );
});

t.test("the kernel's handler answers a person too, and records no crash for it", async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'pm-service-cli-handler-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const spoolDir = join(dir, 'spool');
  const config = join(dir, 'podmortem-handler.json');
  writeFileSync(config, JSON.stringify({ spoolDir }));
  const main = 'collector/src/handler/handler.ts';
  // As the wrapper runs it: --config first, then what the person typed.
  t.same(await run(main, ['--config', config, '--version'], {}), {
    code: 0,
    stdout: `podmortem-handler ${version}\n`,
    stderr: '',
  });
  const r = await run(main, ['--config', config, '--help'], {});
  t.equal(r.code, 0);
  t.equal(r.stderr, '');
  const lines = r.stdout.split('\n');
  t.equal(lines[0], `podmortem-handler ${version}`);
  t.ok(lines.includes(`Usage: node ${main} [--config <file>] [--help | --version]`), 'the usage line');
  for (const [key, { default: def }] of Object.entries(HANDLER_CONFIG_KEYS))
    t.ok(lines.includes(`  ${key}=${shown(def)}`), key);
  t.notOk(existsSync(spoolDir), 'no spool written: not taken for a crash');
});
