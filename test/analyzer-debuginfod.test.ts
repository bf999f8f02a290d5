import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import t from 'tap';
import { moduleKey } from '@podmortem/contract';
import { FsStore } from '@podmortem/contract/store';
import { analyzeCrash } from '../analyzer/src/crash-analysis.ts';
import { MAX_DEBUGINFO_BYTES } from '../analyzer/src/debuginfod.ts';
import { createTelemetry } from '../analyzer/src/telemetry.ts';
import { crashEventFor, storeDump, storeModule } from './support/analyzer-harness.ts';
import { sectionsOf, splitDebugInfo, startDebuginfod } from './support/debuginfod.ts';
import { freePort } from './support/ports.ts';
import { buildIdOf, buildPrograms, crashAll, lineOf } from './support/real-crash.ts';

// Separate debug info through a real debuginfod server: a program built as distributions build
// packages (debug info split off, the executable stripped of every symbol) crashes for real in a
// static function; without a server its frame has no name, with the server's URL the analyzer
// names the function and source line, and keeps the debug file it fetched in the store for the
// query API to serve. A server that cannot be reached costs the names, not the analysis.

const source = `#include <stddef.h>
struct hdr { int len; };
static int parse_header(const struct hdr *h) {
  return h->len; /* CRASH */
}
int main(int argc, char **argv) {
  (void)argv;
  return parse_header(argc > 5 ? (const struct hdr *)argv : NULL);
}
`;

const dir = await mkdtemp(join(tmpdir(), 'pm-an-dbgd-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const exe = (await buildPrograms(dir, { stripped: { source } })).stripped ?? '';
const buildId = (await buildIdOf(exe)) ?? '';
const debugDir = join(dir, 'debug-files');
const { debug } = await splitDebugInfo(exe, debugDir);
const crash = (await crashAll(dir, { stripped: { exe } })).stripped;
if (!crash) throw new Error('no crash');
const server = await startDebuginfod(join(dir, 'server'), debugDir, [buildId]);
t.teardown(() => server.stop());

const logLines: string[] = [];
const logger = pino({ level: 'info' }, { write: (line: string) => logLines.push(line) });

/** A fresh store with the crash's dump and executable, and its analysis with `urls` (if any). */
async function analysed(name: string, urls?: string) {
  const store = new FsStore({ root: await mkdtemp(join(dir, `store-${name}-`)) });
  const event = crashEventFor({ executable: exe, pid: crash?.pid ?? 1, buildId });
  await storeDump(store, event, await readFile(crash?.core ?? ''));
  await storeModule(store, buildId, exe);
  const workDir = await mkdtemp(join(dir, `work-${name}-`));
  const { analysis } = await analyzeCrash(event, {
    store,
    telemetry: createTelemetry(undefined, false),
    version: '0.0.0-test',
    workDir,
    maxTempBytes: 1024 ** 3,
    unwinder: { deadlineMs: 20_000 },
    ...(urls
      ? {
          debuginfod: {
            urls,
            cacheDir: await mkdtemp(join(dir, `cache-${name}-`)),
            maxBytes: MAX_DEBUGINFO_BYTES,
            logger,
          },
        }
      : {}),
    signal: new AbortController().signal,
  });
  return { analysis, store };
}

t.test('the test binary is really stripped', async (t) => {
  const sections = await sectionsOf(exe);
  t.notOk(sections.includes('.symtab'), 'no symbol table');
  t.same(
    sections.filter((s) => s.startsWith('.debug')),
    [],
    'no DWARF',
  );
  t.ok((await sectionsOf(debug)).includes('.debug_info'), 'the debug file has it');
});

t.test('without debuginfod: the crashing frame has no name', async (t) => {
  const { analysis } = await analysed('none');
  t.equal(analysis.status, 'ok', 'unwound');
  const top = analysis.frames?.[0];
  t.equal(top?.build_id, buildId, 'the frame is in the executable');
  t.equal(top?.function, undefined, 'no function name');
  t.equal(top?.file, undefined, 'no source file');
});

t.test('with the real debuginfod server: function, file and line, and the debug file kept', async (t) => {
  const { analysis, store } = await analysed('served', server.url);
  t.equal(analysis.status, 'ok');
  t.match(analysis.frames?.[0], {
    function: 'parse_header',
    file: join(dir, 'stripped.c'),
    line: lineOf(source, 'CRASH'),
  });
  t.equal(analysis.frames?.[1]?.function, 'main', 'its caller too');
  t.equal(analysis.title, `SIGSEGV in parse_header (stripped.c:${lineOf(source, 'CRASH')})`);
  const { body } = await store.get(moduleKey(buildId, 'debuginfo'));
  const kept: Buffer[] = [];
  for await (const chunk of body) kept.push(chunk as Buffer);
  t.ok(
    Buffer.concat(kept).equals(await readFile(debug)),
    'the store holds the served debug file, byte for byte',
  );
  t.match(server.log(), new RegExp(`/buildid/${buildId}/debuginfo`), 'the server was asked for it');
});

t.test('a debuginfod server that refuses connections: analysed all the same, unnamed', async (t) => {
  const closed = `http://127.0.0.1:${await freePort()}`;
  const { analysis, store } = await analysed('refused', closed);
  t.equal(analysis.status, 'ok');
  t.equal(analysis.frames?.[0]?.function, undefined, 'no name');
  await t.rejects(store.stat(moduleKey(buildId, 'debuginfo')), 'no debug file kept');
});
