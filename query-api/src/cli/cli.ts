import { spawn } from 'node:child_process';
import { accessSync, constants, existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';
import type { CrashEvent } from '@podmortem/contract';
import { isCrashId } from '@podmortem/contract/crash-id';
import type {
  CrashContext,
  DumpDeletion,
  GroupPage,
  GroupsPage,
  Reanalysis,
  SearchPage,
} from './api-types.ts';
import { ApiClient, CliError, EXIT, resolveCredentials } from './client.ts';
import { downloadDump, downloadFile } from './download.ts';
import { contextView, crashInfo, crashRows, groupRows, groupView } from './format.ts';

// `podmortem`: the command line of the query API. Needs Node.js 24 (query-api/bin/podmortem
// finds it). Every command takes --help; exit codes are in EXIT and documented below.

type Options = NonNullable<ParseArgsConfig['options']>;

const globalOptions: Options = {
  server: { type: 'string' },
  token: { type: 'string' },
  kubeconfig: { type: 'string' },
  help: { type: 'boolean', short: 'h' },
};

const filterOptions: Options = {
  namespace: { type: 'string', short: 'n' },
  pod: { type: 'string' },
  'pod-uid': { type: 'string' },
  container: { type: 'string', short: 'c' },
  node: { type: 'string' },
  image: { type: 'string' },
  signal: { type: 'string' },
  executable: { type: 'string' },
  signature: { type: 'string' },
  status: { type: 'string' },
  since: { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  query: { type: 'string', short: 'q' },
  limit: { type: 'string' },
  json: { type: 'boolean' },
};

const downloadOptions: Options = {
  output: { type: 'string', short: 'o' },
  format: { type: 'string' },
  progress: { type: 'boolean' },
  quiet: { type: 'boolean' },
};

interface Command {
  summary: string;
  usage: string;
  options: Options;
  details: string;
  positionals: number;
  run(args: Parsed, api: () => Promise<ApiClient>, io: Io): Promise<number>;
}

type OptionValue = string | boolean | (string | boolean)[] | undefined;

interface Parsed {
  values: Record<string, OptionValue>;
  positionals: string[];
  rest: string[];
}

export interface Io {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream & { isTTY?: boolean };
  env: Record<string, string | undefined>;
  cwd: string;
}

const GLOBAL_HELP = `Global options:
  --server URL        the query API (or PODMORTEM_SERVER)
  --token TOKEN       a Kubernetes bearer token (or PODMORTEM_TOKEN; default: the current
                      kubeconfig context's token, --kubeconfig FILE or KUBECONFIG)
  -h, --help          this help

Exit codes: 0 ok, 1 error, 2 usage (or a parameter the API refused), 3 not found (or dump
removed), 4 not authenticated or not allowed, 5 sha256 verification failed, 6 unavailable
(API unreachable, or it answered 429/502/503/504: try again later).`;

const str = (v: OptionValue): string | undefined => (typeof v === 'string' ? v : undefined);

/** `30m`, `2h`, `7d` → milliseconds. */
export function parseDuration(value: string): number {
  const m = /^(\d+)(s|m|h|d)$/.exec(value);
  if (!m) throw new CliError(EXIT.usage, `--since ${value}: expected a duration like 30m, 2h or 7d`);
  const unit = { s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 's' | 'm' | 'h' | 'd'];
  return Number(m[1]) * unit;
}

function positiveInt(name: string, value: string | undefined, def: number): number {
  if (value === undefined) return def;
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1)
    throw new CliError(EXIT.usage, `--${name} ${value}: expected a positive integer`);
  return n;
}

async function getCrash(api: ApiClient, id: string): Promise<CrashEvent> {
  return api.json<CrashEvent>(`/v1/crashes/${encodeURIComponent(id)}`);
}

/** The removal as people read it: `deleted by dora at …: deleted by dora`. */
function removal(dump: CrashEvent['dump']): string {
  return `${dump.status} by ${dump.removed_by ?? '?'} at ${dump.removed_at ?? '?'}${dump.reason ? `: ${dump.reason}` : ''}`;
}

/** Polls the crash until its dump has been removed (removed_at set), for at most `timeoutMs`. */
async function removedDump(api: ApiClient, id: string, timeoutMs: number): Promise<CrashEvent['dump']> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const { dump } = await getCrash(api, id);
    if (dump.removed_at !== undefined) return dump;
    if (Date.now() >= deadline)
      throw new CliError(
        EXIT.unavailable,
        `${id}: the deletion was requested but is not done after ${timeoutMs / 1000} s (is the retention service running?); it will be done once it runs`,
      );
    await new Promise((r) => setTimeout(r, 500));
  }
}

function format(value: string | undefined, def: 'raw' | 'zstd'): 'raw' | 'zstd' {
  const f = value ?? def;
  if (f !== 'raw' && f !== 'zstd') throw new CliError(EXIT.usage, `--format ${f}: raw or zstd`);
  return f;
}

async function download(
  args: Parsed,
  api: ApiClient,
  io: Io,
  event: CrashEvent,
  file: string,
): Promise<void> {
  const fmt = format(str(args.values.format), 'raw');
  const showProgress =
    args.values.progress === true || (args.values.quiet !== true && io.stderr.isTTY === true);
  const result = await downloadDump(api, event.crash.id, file, {
    format: fmt,
    expectedSha256: event.dump.sha256,
    progress: showProgress ? io.stderr : undefined,
  });
  if (args.values.quiet !== true) {
    io.stderr.write(
      result.verified
        ? `${file}: ${result.bytes} bytes, sha256 ${result.sha256 ?? ''} verified\n`
        : `${file}: ${result.bytes} bytes; the crash event records no sha256, not verified\n`,
    );
  }
}

function which(program: string, env: Record<string, string | undefined>): string | undefined {
  if (program.includes('/')) return existsSync(program) ? program : undefined;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (!dir) continue;
    const candidate = join(dir, program);
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // Not in this directory.
    }
  }
  return undefined;
}

/** The executable to debug, or why there is none: --exe, else the API's by build id, else the path
 * the crash event names when it exists here. */
async function executableOf(
  args: Parsed,
  api: ApiClient,
  io: Io,
  event: CrashEvent,
  tmp: string,
): Promise<{ path: string; why?: undefined } | { path?: undefined; why: string }> {
  const given = str(args.values.exe);
  if (given !== undefined)
    return existsSync(given) ? { path: given } : { why: `--exe ${given} does not exist` };
  const exe = event.process.executable;
  const buildId = event.analysis?.build_id;
  let fromApi = 'the crash event records no build id of the executable';
  if (buildId !== undefined) {
    const path = join(tmp, 'executable');
    try {
      await downloadFile(api, `/buildid/${encodeURIComponent(buildId)}/executable`, path, 0o700);
      return { path };
    } catch (err) {
      // Not stored (or not for this caller): the executable may still be here.
      if (!(err instanceof CliError) || err.exitCode !== EXIT.notFound) throw err;
      fromApi = `the API has no executable of build id ${buildId} (${err.message})`;
    }
  }
  if (exe !== undefined && existsSync(exe)) {
    if (args.values.quiet !== true) io.stderr.write(`${fromApi}; using ${exe}\n`);
    return { path: exe };
  }
  const image = event.container?.image?.name;
  return {
    why:
      `${fromApi}, and the executable ${exe ?? '(unknown)'} is not here: pass --exe PATH` +
      (image ? ` (copy it from the image ${image}, e.g. with docker cp or crane export)` : ''),
  };
}

/** gdb's environment: the API as its only debuginfod server, the token in a file of mode 0600. */
async function debuginfodEnv(
  api: ApiClient,
  io: Io,
  tmp: string,
): Promise<Record<string, string | undefined>> {
  const cache = join(tmp, 'debuginfod-cache');
  await mkdir(cache, { mode: 0o700 });
  const env: Record<string, string | undefined> = {
    ...io.env,
    DEBUGINFOD_URLS: api.server,
    DEBUGINFOD_CACHE_PATH: cache,
    DEBUGINFOD_HEADERS_FILE: undefined,
  };
  const authorization = api.authorization();
  if (authorization !== undefined) {
    const headers = join(tmp, 'debuginfod-headers');
    await writeFile(headers, `Authorization: ${authorization}\n`, { mode: 0o600, flag: 'wx' });
    env.DEBUGINFOD_HEADERS_FILE = headers;
  }
  return env;
}

/** Runs gdb on the terminal; Ctrl-C is gdb's while it runs. Resolves to gdb's exit code. */
function runGdb(
  gdb: string,
  args: string[],
  env: Record<string, string | undefined>,
  io: Io,
): Promise<number> {
  const child = spawn(gdb, ['-iex', 'set debuginfod enabled on', ...args], { stdio: 'inherit', env });
  const ignore = () => undefined;
  process.on('SIGINT', ignore);
  return new Promise<number>((resolve) => {
    child.on('exit', (code) => resolve(code ?? EXIT.error));
    child.on('error', (err) => {
      io.stderr.write(`gdb: ${err.message}\n`);
      resolve(EXIT.error);
    });
  }).finally(() => process.off('SIGINT', ignore));
}

const commands: Record<string, Command> = {
  list: {
    summary: 'list crashes, newest first',
    usage: 'podmortem list [filters] [--json]',
    positionals: 0,
    options: filterOptions,
    details: `Filters:
  -n, --namespace NS  --pod NAME  --pod-uid UID  -c, --container NAME  --node NAME
  --image REF         (without a tag: every tag)
  --signal SIG        (SIGSEGV, SEGV or 11)
  --executable PATH   (or a program name)
  --signature SIG     --status stored|pending|skipped|truncated|failed
  --since 2h | --from TIME  --to TIME   (RFC 3339 times)
  -q, --query TEXT    free text
  --limit N           at most N crashes (default 50; pages are followed)
  --json              the crash events as a JSON array`,
    async run(args, apiOf, io) {
      const v = args.values;
      const limit = positiveInt('limit', str(v.limit), 50);
      const since = str(v.since);
      if (since !== undefined && str(v.from) !== undefined)
        throw new CliError(EXIT.usage, '--since and --from exclude each other');
      const query: Record<string, string | number | undefined> = {
        namespace: str(v.namespace),
        pod: str(v.pod),
        pod_uid: str(v['pod-uid']),
        container: str(v.container),
        node: str(v.node),
        image: str(v.image),
        signal: str(v.signal),
        executable: str(v.executable),
        signature: str(v.signature),
        status: str(v.status),
        from: since === undefined ? str(v.from) : new Date(Date.now() - parseDuration(since)).toISOString(),
        to: str(v.to),
        q: str(v.query),
      };
      const api = await apiOf();
      const items: SearchPage['items'] = [];
      let cursor: string | undefined;
      do {
        const page = await api.json<SearchPage>('/v1/crashes', {
          ...query,
          limit: Math.min(100, limit - items.length),
          cursor,
        });
        items.push(...page.items);
        cursor = page.next_cursor ?? undefined;
      } while (cursor !== undefined && items.length < limit);
      if (v.json === true) io.stdout.write(JSON.stringify(items, null, 2) + '\n');
      else if (items.length === 0) io.stderr.write('no crashes found\n');
      else io.stdout.write(crashRows(items));
      return EXIT.ok;
    },
  },
  info: {
    summary: 'show one crash, its analysis and the backtrace of the crashing thread',
    usage: 'podmortem info ID [--all-threads] [--json]',
    positionals: 1,
    options: { json: { type: 'boolean' }, 'all-threads': { type: 'boolean' } },
    details: `  --all-threads       the backtrace of every thread (the crashing one first)
  --json              the crash event as JSON`,
    async run(args, apiOf, io) {
      const event = await getCrash(await apiOf(), args.positionals[0] ?? '');
      io.stdout.write(
        args.values.json === true
          ? JSON.stringify(event, null, 2) + '\n'
          : crashInfo(event, { allThreads: args.values['all-threads'] === true }),
      );
      return EXIT.ok;
    },
  },
  groups: {
    summary: 'crashes grouped by signature, the largest groups first',
    usage:
      'podmortem groups [-n NS] [--since D] [--new] [--new-within D] [--sort count|last-seen] [--limit N] [--json]',
    positionals: 0,
    options: {
      namespace: { type: 'string', short: 'n' },
      since: { type: 'string' },
      new: { type: 'boolean' },
      'new-within': { type: 'string' },
      sort: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
    details: `  -n, --namespace NS  one namespace (default: every one you may list)
  --since D           crashes of the last D (30m, 24h, 7d; default 7d)
  --new               only the groups whose first crash is recent (see --new-within)
  --new-within D      what recent means (default: the API's, 24h unless configured)
  --sort count|last-seen   most crashes first (default), or latest crash first
  --limit N           at most N groups (default 50, at most 200)
  --json              the API's answer as JSON`,
    async run(args, apiOf, io) {
      const v = args.values;
      const since = str(v.since);
      const sort = str(v.sort);
      if (sort !== undefined && sort !== 'count' && sort !== 'last-seen')
        throw new CliError(EXIT.usage, `--sort ${sort}: count or last-seen`);
      const page = await (
        await apiOf()
      ).json<GroupsPage>('/v1/groups', {
        namespace: str(v.namespace),
        from: since === undefined ? undefined : new Date(Date.now() - parseDuration(since)).toISOString(),
        new: v.new === true ? 'true' : undefined,
        new_within: str(v['new-within']),
        sort: sort === 'last-seen' ? 'last_seen' : sort,
        limit: positiveInt('limit', str(v.limit), 50),
      });
      if (v.json === true) io.stdout.write(JSON.stringify(page, null, 2) + '\n');
      else if (page.groups.length === 0) io.stderr.write('no crash groups found\n');
      else io.stdout.write(groupRows(page.groups));
      return EXIT.ok;
    },
  },
  group: {
    summary: 'one crash group (by signature) and its newest crashes',
    usage: 'podmortem group SIGNATURE [-n NS] [--since D] [--limit N] [--json]',
    positionals: 1,
    options: {
      namespace: { type: 'string', short: 'n' },
      since: { type: 'string' },
      limit: { type: 'string' },
      json: { type: 'boolean' },
    },
    details: `  -n, --namespace NS  one namespace (default: every one you may list)
  --since D           crashes of the last D (default: since the first crash)
  --limit N           the newest N crashes (default 20)
  --json              the API's answer as JSON`,
    async run(args, apiOf, io) {
      const v = args.values;
      const since = str(v.since);
      const page = await (
        await apiOf()
      ).json<GroupPage>(`/v1/groups/${encodeURIComponent(args.positionals[0] ?? '')}`, {
        namespace: str(v.namespace),
        from: since === undefined ? undefined : new Date(Date.now() - parseDuration(since)).toISOString(),
        limit: positiveInt('limit', str(v.limit), 20),
      });
      io.stdout.write(v.json === true ? JSON.stringify(page, null, 2) + '\n' : groupView(page));
      return EXIT.ok;
    },
  },
  reanalyze: {
    summary: 'analyse a crash again',
    usage: 'podmortem reanalyze ID [--json]',
    positionals: 1,
    options: { json: { type: 'boolean' } },
    details: `Asks the analyzer to analyse the crash again (after an analyzer upgrade, or once its
modules are stored); \`podmortem info ID\` shows the new analysis once it is done.
  --json              the API's answer as JSON`,
    async run(args, apiOf, io) {
      const id = args.positionals[0] ?? '';
      const res = await (
        await apiOf()
      ).json<Reanalysis>(`/v1/crashes/${encodeURIComponent(id)}/analysis`, {}, { method: 'POST' });
      io.stdout.write(
        args.values.json === true
          ? JSON.stringify(res, null, 2) + '\n'
          : `crash ${res.crash_id}: re-analysis requested at ${res.requested_at}\n`,
      );
      return EXIT.ok;
    },
  },
  delete: {
    summary: 'delete a crash’s core dump',
    usage: 'podmortem delete ID [--no-wait | --timeout SECONDS] [--json]',
    positionals: 1,
    options: { json: { type: 'boolean' }, 'no-wait': { type: 'boolean' }, timeout: { type: 'string' } },
    details: `Deletes the crash's core from storage (it cannot be downloaded after: 410). The crash
stays, its dump marked deleted by you. Needs \`delete\` on coredumps/dump in the crash's
namespace. The API accepts the request and the retention service performs it; the command
waits until the crash says deleted. Deleting a removed dump again changes nothing and prints
the first removal.
  --no-wait           return once the deletion is requested
  --timeout SECONDS   longest wait for the deletion to be done (default 60; then exit 6)
  --json              the crash's dump (or, with --no-wait, the API's answer) as JSON`,
    async run(args, apiOf, io) {
      const id = args.positionals[0] ?? '';
      // Refused here, before a token is looked for: a destructive command names its mistake first.
      if (!isCrashId(id))
        throw new CliError(EXIT.usage, `${id}: not a crash id (a UUIDv7, as \`podmortem list\` shows)`);
      const timeoutS = positiveInt('timeout', args.values.timeout as string | undefined, 60);
      const api = await apiOf();
      const res = await api.json<DumpDeletion>(
        `/v1/crashes/${encodeURIComponent(id)}/dump`,
        {},
        { method: 'DELETE' },
      );
      const json = args.values.json === true;
      if (!res.changed || args.values['no-wait'] === true) {
        io.stdout.write(
          json
            ? JSON.stringify(res, null, 2) + '\n'
            : res.changed
              ? `crash ${id}: deletion requested at ${res.requested_at ?? '?'}\n`
              : `crash ${id}: dump already removed (${removal(res.dump)})\n`,
        );
        return EXIT.ok;
      }
      if (!json) io.stderr.write(`crash ${id}: deletion requested; waiting for it to be done…\n`);
      const dump = await removedDump(api, id, timeoutS * 1000);
      io.stdout.write(
        json
          ? JSON.stringify({ crash_id: id, dump }, null, 2) + '\n'
          : `crash ${id}: dump deleted (${removal(dump)})\n`,
      );
      return EXIT.ok;
    },
  },
  dump: {
    summary: 'download a crash’s core, verifying its sha256',
    usage: 'podmortem dump ID -o FILE [--format raw|zstd] [--progress|--quiet]',
    positionals: 1,
    options: downloadOptions,
    details: `  -o, --output FILE   where to write the core (required)
  --format raw|zstd   raw: the core as the kernel wrote it (default); zstd: as stored
  --progress          show progress on stderr (default when stderr is a terminal)
  --quiet             print nothing on success
The sha256 recorded in the crash event is checked; on a mismatch nothing is kept (exit 5).`,
    async run(args, apiOf, io) {
      const file = str(args.values.output);
      if (file === undefined) throw new CliError(EXIT.usage, 'dump needs -o FILE');
      const api = await apiOf();
      const event = await getCrash(api, args.positionals[0] ?? '');
      await download(args, api, io, event, file);
      return EXIT.ok;
    },
  },
  context: {
    summary: 'metrics, logs and other crashes of the pod around a crash',
    usage: 'podmortem context ID [--before SECONDS] [--after SECONDS] [--log-lines N] [--json]',
    positionals: 1,
    options: {
      before: { type: 'string' },
      after: { type: 'string' },
      'log-lines': { type: 'string' },
      json: { type: 'boolean' },
    },
    details: `  --before S, --after S   the window around the crash (the API's defaults otherwise)
  --log-lines N           the most log lines
  --json                  the whole context as JSON`,
    async run(args, apiOf, io) {
      const v = args.values;
      const ctx = await (
        await apiOf()
      ).json<CrashContext>(`/v1/crashes/${encodeURIComponent(args.positionals[0] ?? '')}/context`, {
        before: str(v.before),
        after: str(v.after),
        log_lines: str(v['log-lines']),
      });
      io.stdout.write(v.json === true ? JSON.stringify(ctx, null, 2) + '\n' : contextView(ctx));
      return EXIT.ok;
    },
  },
  debug: {
    summary: 'download a core and open it in gdb, the API serving its executable and debug info',
    usage: 'podmortem debug ID [--exe PATH] [--gdb PATH] [-o FILE] [-- GDB-ARGS...]',
    positionals: 1,
    options: { ...downloadOptions, exe: { type: 'string' }, gdb: { type: 'string' } },
    details: `Downloads the core, fetches the crashed program's executable by its build id from the API
(GET /buildid/ID/executable) and runs gdb EXECUTABLE CORE with the API as its debuginfod server:
DEBUGINFOD_URLS is the API's address (and nothing else, so the token goes nowhere else),
DEBUGINFOD_HEADERS_FILE a temporary file (mode 0600) with the bearer token, DEBUGINFOD_CACHE_PATH a
temporary folder, and -iex 'set debuginfod enabled on'. gdb then fetches the separate debug info
of the executable (and of other modules) that the API keeps. The temporary files are removed when
gdb ends; the exit code is gdb's.
  --exe PATH          the crashed program's executable (default: the API's, by build id, else
                      its path in the crash event, when that exists here)
  --gdb PATH          gdb to run (default: gdb on PATH)
  -o FILE             where to keep the core (default: ./ID.core)
Arguments after -- go to gdb (e.g. -- -batch -ex bt). Says what is missing when gdb or the
executable is not at hand (exit 1), after downloading the core.`,
    async run(args, apiOf, io) {
      const api = await apiOf();
      const event = await getCrash(api, args.positionals[0] ?? '');
      const gdb = which(str(args.values.gdb) ?? 'gdb', io.env);
      const file = str(args.values.output) ?? join(io.cwd, `${event.crash.id}.core`);
      await download({ ...args, values: { ...args.values, format: 'raw' } }, api, io, event, file);
      const tmp = await mkdtemp(join(io.env.TMPDIR ?? tmpdir(), 'podmortem-debug-'));
      try {
        const found = await executableOf(args, api, io, event, tmp);
        const missing: string[] = [];
        if (!gdb) missing.push('gdb is not on PATH: install it (apt-get install gdb) or pass --gdb PATH');
        const exe = found.path;
        if (found.why !== undefined) missing.push(found.why);
        if (!gdb || exe === undefined) {
          io.stderr.write(
            `the core is in ${file}, but to debug it:\n${missing.map((m) => `  - ${m}\n`).join('')}`,
          );
          return EXIT.error;
        }
        return await runGdb(gdb, [...args.rest, exe, file], await debuginfodEnv(api, io, tmp), io);
      } finally {
        await rm(tmp, { recursive: true, force: true });
      }
    },
  },
};

function mainHelp(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  return `podmortem — find crashes of Kubernetes pods and get their core dumps

Usage: podmortem COMMAND [options]

Commands:
${Object.entries(commands)
  .map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`)
  .join('\n')}

Run podmortem COMMAND --help for a command's options. Needs Node.js 24: query-api/bin/podmortem
runs PODMORTEM_NODE, else the repository's node_modules/.bin/node, else node on PATH if 24+.

${GLOBAL_HELP}
`;
}

function commandHelp(name: string, c: Command): string {
  return `podmortem ${name} — ${c.summary}\n\nUsage: ${c.usage}\n\n${c.details}\n\n${GLOBAL_HELP}\n`;
}

export async function runCli(argv: string[], io: Io): Promise<number> {
  const dashDash = argv.indexOf('--');
  const args = dashDash === -1 ? argv : argv.slice(0, dashDash);
  const rest = dashDash === -1 ? [] : argv.slice(dashDash + 1);
  // The command is the first word that is not an option or an option's value.
  const every: Options = { ...globalOptions };
  for (const c of Object.values(commands)) Object.assign(every, c.options);
  const first = parseArgs({ args, options: every, allowPositionals: true, strict: false });
  const name = first.positionals[0];
  if (name === undefined) {
    if (first.values.help === true) {
      io.stdout.write(mainHelp());
      return EXIT.ok;
    }
    io.stderr.write(mainHelp());
    return EXIT.usage;
  }
  const command = commands[name];
  if (!command) {
    io.stderr.write(`podmortem: unknown command ${name}\n\n${mainHelp()}`);
    return EXIT.usage;
  }
  let parsed: Parsed;
  try {
    const p = parseArgs({
      args,
      options: { ...globalOptions, ...command.options },
      allowPositionals: true,
      strict: true,
    });
    parsed = { values: p.values, positionals: p.positionals.slice(1), rest };
  } catch (err) {
    io.stderr.write(
      `podmortem ${name}: ${err instanceof Error ? err.message : String(err)}\n\n${commandHelp(name, command)}`,
    );
    return EXIT.usage;
  }
  if (parsed.values.help === true) {
    io.stdout.write(commandHelp(name, command));
    return EXIT.ok;
  }
  if (parsed.positionals.length !== command.positionals) {
    io.stderr.write(`podmortem ${name}: expected ${command.usage}\n`);
    return EXIT.usage;
  }
  if (rest.length > 0 && name !== 'debug') {
    io.stderr.write(`podmortem ${name}: takes no arguments after --\n`);
    return EXIT.usage;
  }
  const apiOf = async () =>
    new ApiClient(
      await resolveCredentials(
        {
          server: str(parsed.values.server),
          token: str(parsed.values.token),
          kubeconfig: str(parsed.values.kubeconfig),
        },
        io.env,
      ),
    );
  try {
    return await command.run(parsed, apiOf, io);
  } catch (err) {
    if (err instanceof CliError) {
      io.stderr.write(`podmortem ${name}: ${err.message}\n`);
      return err.exitCode;
    }
    io.stderr.write(`podmortem ${name}: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.error;
  }
}

if (process.argv[1] !== undefined && import.meta.filename === process.argv[1]) {
  const code = await runCli(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
  });
  process.exitCode = code;
}
