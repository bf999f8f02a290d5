import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { buildPrograms, crashAll, lineOf } from '../../test/support/real-crash.ts';
import {
  CRASH_MACHINERY_FUNCTIONS,
  SIGNATURE_FRAME_COUNT,
  SIGNATURE_HEX_LENGTH,
  crashSignature,
  normalizeFunction,
  significantFrames,
} from './signature.ts';
import { parseStackText } from './stack-text.ts';

// The grouping rule on the frames of a real assert() abort, as eu-stack prints them with the C
// library's debug info, without it, and without DWARF names: the machinery beneath the failed
// assertion goes, the caller of __assert_fail is the top frame, and the signature is the hash of
// the documented parts, whichever of these views of the same crash it is made from.

const run = promisify(execFile);

const source = `#include <assert.h>
#include <stdlib.h>
int check_length(int n) {
  assert(n > 0); /* ASSERT */
  return n;
}
int read_request(int n) {
  return check_length(n) + 1; /* CALL */
}
int main(int argc, char **argv) {
  (void)argv;
  return read_request(argc - 1); /* MAIN */
}
`;

const dir = await mkdtemp(join(tmpdir(), 'pm-an-sig-'));
t.teardown(() => rm(dir, { recursive: true, force: true }));
const { abrt = '' } = await buildPrograms(dir, { abrt: { source } });
const { abrt: crash } = await crashAll(dir, { abrt: { exe: abrt } });
if (!crash) throw new Error('no crash');

/** The crashing thread's frames as eu-stack prints them with `flags`. */
async function framesWith(...flags: string[]) {
  const { stdout, stderr } = await run('eu-stack', [
    ...flags,
    `--executable=${abrt}`,
    `--core=${crash?.core ?? ''}`,
  ]);
  return parseStackText(stdout, stderr, 256)[0]?.frames ?? [];
}
const withDebuginfo = await framesWith('-b', '-m', '-s', '-i');
const noLibcDebuginfo = await framesWith('-b', '-m', '-s', '-i', '--debuginfo-path=/nonexistent');
const symbolsOnly = await framesWith('-b', '-m', '-s');

const expected = createHash('sha256')
  .update(['functions', 'SIGABRT', 'check_length', 'read_request', 'main'].join('\n'))
  .digest('hex')
  .slice(0, SIGNATURE_HEX_LENGTH);

t.test('the crash is a real SIGABRT through assert', async (t) => {
  t.equal(crash.signal, 'SIGABRT');
  t.ok(
    withDebuginfo.some((f) => f.function !== undefined && normalizeFunction(f.function) === '__assert_fail'),
    'eu-stack shows __assert_fail',
  );
});

t.test('the machinery and unnamed frames are skipped; the caller of __assert_fail is first', async (t) => {
  for (const [view, frames] of Object.entries({ withDebuginfo, noLibcDebuginfo, symbolsOnly })) {
    const kept = significantFrames(frames);
    t.same(
      kept.map((f) => f.function),
      ['check_length', 'read_request', 'main'],
      `${view}: ${frames.map((f) => f.function ?? '?').join(' < ')}`,
    );
    const skipped = frames.filter((f) => !kept.includes(f));
    t.ok(
      skipped.every(
        (f) => f.function === undefined || CRASH_MACHINERY_FUNCTIONS.includes(normalizeFunction(f.function)),
      ),
      `${view}: only machinery and unnamed frames skipped`,
    );
  }
});

t.test('signature: sha256 of signal and names, the same from every view of the crash', async (t) => {
  for (const frames of [withDebuginfo, noLibcDebuginfo, symbolsOnly]) {
    const s = crashSignature('SIGABRT', frames);
    t.equal(s.signature, expected);
    t.equal(s.basis, 'functions');
    t.equal(s.title, `SIGABRT in check_length (abrt.c:${lineOf(source, 'ASSERT')})`);
  }
  t.not(crashSignature('SIGSEGV', withDebuginfo).signature, expected, 'the signal is part of it');
});

t.test('at most SIGNATURE_FRAME_COUNT names: deeper callers do not change it', async (t) => {
  const top = significantFrames(withDebuginfo)[0];
  if (!top) throw new Error('no frame');
  const deep = Array.from({ length: SIGNATURE_FRAME_COUNT }, () => top);
  const deeper = [...deep, ...withDebuginfo];
  t.equal(crashSignature('SIGABRT', deep).signature, crashSignature('SIGABRT', deeper).signature);
  t.equal(crashSignature('SIGABRT', deeper).frames.length, SIGNATURE_FRAME_COUNT);
});

t.test('no name left: grouped by modules, titled by module and offset', async (t) => {
  const bare = withDebuginfo.map((f) => ({ ...f, function: undefined }));
  const s = crashSignature('SIGABRT', bare);
  const first = bare[0];
  t.equal(s.basis, 'modules');
  t.equal(s.title, `SIGABRT at ${first?.module}+0x${first?.offset?.toString(16)}`);
  const modules = bare.slice(0, SIGNATURE_FRAME_COUNT).map((f) => f.module);
  t.equal(
    s.signature,
    createHash('sha256')
      .update(['modules', 'SIGABRT', ...modules].join('\n'))
      .digest('hex')
      .slice(0, SIGNATURE_HEX_LENGTH),
  );
  t.equal(crashSignature('SIGABRT', []).title, 'SIGABRT', 'no frame at all: the signal alone');
});

t.test('normalized names: symbol versions and glibc __GI_ aliases', async (t) => {
  t.ok(
    symbolsOnly.some((f) => f.function?.includes('@@GLIBC_')),
    'symbol names without DWARF carry versions',
  );
  t.equal(normalizeFunction('__libc_start_main@@GLIBC_2.34'), '__libc_start_main');
  t.equal(normalizeFunction('__GI___assert_fail'), '__assert_fail');
  t.equal(normalizeFunction('__assert_fail_base.cold'), '__assert_fail_base');
  t.equal(normalizeFunction('parse_header.part.0'), 'parse_header');
  t.equal(normalizeFunction('parse_header.constprop.0.isra.0'), 'parse_header');
  t.equal(normalizeFunction('net::Parser::run(char const*, int)'), 'net::Parser::run(char const*, int)');
});
