import { spawn } from 'node:child_process';
import { open, stat } from 'node:fs/promises';
import { performance } from 'node:perf_hooks';
import { debuginfodEnv, type DebuginfodParams } from './debuginfod.ts';
import { parseStackText, type StackThread } from './stack-text.ts';

// Unwinds every thread of a core with elfutils' eu-stack, a separate process under limits: a core
// comes from a crashed, possibly hostile program, and an unwinder fed a corrupt one may loop,
// allocate without end or crash itself. So it runs in its own process group under a wall-clock
// deadline (the whole group is killed), an address-space limit (prlimit), with no core of its own
// (a crashing analyzer must not feed the very pipeline it serves), a frame limit per thread and a
// cap on the bytes of output read.
//
// The crashing thread comes first: the kernel writes the NT_PRSTATUS note of the thread that took
// the signal before the others', and eu-stack walks the threads in note order (both checked by
// test/analyzer-unwind.test.ts on a real core of an 8-thread crash).
//
// eu-stack flags: -b build id and module offset of each pc (what the contract's frames carry),
// -m module name, -s source file:line:column, -i inlined calls as frames of their own (implies
// -d: function names from DWARF, so static functions of a stripped-symbol build still have names),
// -n the frame limit. Names stay demangled (no -r): signatures hash what a reader sees.
//
// Its environment is explicit: PATH, and the debuginfod variables only when the analyzer is
// configured with servers, so a DEBUGINFOD_URLS the analyzer itself inherited is never used.

export interface UnwindInput {
  /** The raw (uncompressed) core as the kernel wrote it. */
  core: string;
  /** The crashed program's executable, matched to the core by build id. */
  executable: string;
  /**
   * Folders searched for modules and separate debug files by build id, laid out as
   * `.build-id/<first two hex digits>/<rest>` (the module) and `<rest>.debug` (its debug file):
   * the captured shared libraries of the pod and any debuginfo. When none is given, elfutils'
   * own default (`:.debug:/usr/lib/debug`) applies and modules are looked for at the paths the
   * core names, which on an analyzer are its own files, not the pod's.
   */
  debuginfoDirs?: readonly string[];
}

export interface UnwinderParams {
  /** The eu-stack executable (a path or a name on PATH). Default `eu-stack`. */
  command?: string;
  /** The prlimit executable that applies the limits. Default `prlimit`. */
  prlimitCommand?: string;
  /** Wall-clock time after which the unwinder's process group is killed. Default 30 s. */
  deadlineMs?: number;
  /**
   * RLIMIT_AS of the unwinder. Default 1 GiB. It need not cover the core: libelf maps the core
   * when the mapping fits and reads the parts it needs when it does not.
   */
  addressSpaceBytes?: number;
  /** Frames kept per thread (eu-stack's -n). Default 256, the contract's `analysis.frames` cap. */
  maxFramesPerThread?: number;
  /** Bytes of standard output read before the unwinder is stopped. Default 8 MiB. */
  maxOutputBytes?: number;
  /** Milliseconds since an arbitrary origin, for the run's duration. Default performance.now. */
  clock?: () => number;
  /**
   * Aborted when the caller gives up (the service shuts down): the process group is killed then,
   * since a detached group outlives its parent and would keep running after the service exits.
   */
  signal?: AbortSignal;
  /** debuginfod servers asked for the debug files of modules found without one; none by default. */
  debuginfod?: DebuginfodParams;
}

export const UNWINDER_DEFAULTS: Required<Omit<UnwinderParams, 'signal' | 'debuginfod'>> = {
  command: 'eu-stack',
  prlimitCommand: 'prlimit',
  deadlineMs: 30_000,
  addressSpaceBytes: 1024 ** 3,
  maxFramesPerThread: 256,
  maxOutputBytes: 8 * 1024 ** 2,
  clock: () => performance.now(),
};

/** Standard error kept for a failure's message; the rest is dropped. */
const MAX_STDERR_BYTES = 64 * 1024;

export interface Unwound {
  ok: true;
  /** The crashing thread first (`crashing: true`), then the others in the core's order. */
  threads: StackThread[];
  /** Output stopped at maxOutputBytes: the last thread is cut short, any after it are missing. */
  outputTruncated: boolean;
  /** What eu-stack said on standard error (unwind errors, frame limits reached). */
  warnings: string[];
  durationMs: number;
}

export const UNWIND_FAILURE_REASONS = [
  /** The core file cannot be read. */
  'core-unreadable',
  /** The file is not an ELF core. */
  'not-a-core',
  /** The executable is not there (not captured, deleted). */
  'executable-missing',
  /** The unwinder (or prlimit) could not be started at all. */
  'spawn-failed',
  /** The deadline passed; the process group was killed. */
  'timeout',
  /** The unwinder died of a signal (a crash of its own, the OOM killer). */
  'killed',
  /** The unwinder exited with a fatal status (eu-stack: 2 and above). */
  'unwinder-error',
  /** The unwinder exited but printed no thread. */
  'no-threads',
  /** The caller's signal was aborted; the process group was killed. */
  'aborted',
] as const;
export type UnwindFailureReason = (typeof UNWIND_FAILURE_REASONS)[number];

export interface UnwindFailure {
  ok: false;
  reason: UnwindFailureReason;
  message: string;
  exitCode?: number;
  signal?: string;
  stderr: string;
  durationMs: number;
}

export type UnwindResult = Unwound | UnwindFailure;

const ELF_MAGIC = Buffer.from([0x7f, 0x45, 0x4c, 0x46]);
const ET_CORE = 4;

/** Why `path` is not an ELF core, or undefined when its header says it is one. */
async function notACore(path: string): Promise<string | undefined> {
  const file = await open(path, 'r');
  try {
    const header = Buffer.alloc(18);
    const { bytesRead } = await file.read(header, 0, header.length, 0);
    if (bytesRead < header.length || !header.subarray(0, 4).equals(ELF_MAGIC)) return 'no ELF header';
    // e_type sits at 16 in both ELF classes; EI_DATA (byte 5) says its byte order.
    const type = header[5] === 2 ? header.readUInt16BE(16) : header.readUInt16LE(16);
    return type === ET_CORE ? undefined : `ELF type ${type}, not a core (${ET_CORE})`;
  } finally {
    await file.close();
  }
}

const errorText = (error: unknown): string => (error instanceof Error ? error.message : String(error));

interface Settled {
  stdout: string;
  stderr: string;
  exitCode: number | null;
  signal: NodeJS.Signals | null;
  timedOut: boolean;
  aborted: boolean;
  outputTruncated: boolean;
  spawnError?: Error;
}

function run(
  argv: string[],
  env: Record<string, string>,
  deadlineMs: number,
  maxOutputBytes: number,
  signal: AbortSignal | undefined,
): Promise<Settled> {
  return new Promise((resolve) => {
    const [file = '', ...args] = argv;
    const child = spawn(file, args, { detached: true, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let outBytes = 0;
    let errBytes = 0;
    let timedOut = false;
    let aborted = false;
    let outputTruncated = false;
    let spawnError: Error | undefined;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // ESRCH: the whole group is gone already.
      }
    };
    const stop = (): void => {
      killGroup();
      // A process that left the group may still hold the pipes open; do not wait for it.
      child.stdout.destroy();
      child.stderr.destroy();
    };
    const timer = setTimeout(() => {
      timedOut = true;
      stop();
    }, deadlineMs);
    const onAbort = (): void => {
      aborted = true;
      stop();
    };
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    child.stdout.on('data', (chunk: Buffer) => {
      const room = maxOutputBytes - outBytes;
      out.push(chunk.subarray(0, room));
      outBytes += Math.min(room, chunk.length);
      if (chunk.length > room) {
        outputTruncated = true;
        killGroup();
        child.stdout.destroy();
      }
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (errBytes < MAX_STDERR_BYTES) err.push(chunk.subarray(0, MAX_STDERR_BYTES - errBytes));
      errBytes += chunk.length;
    });
    child.on('error', (error) => {
      spawnError = error;
    });
    child.on('close', (exitCode, exitSignal) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      resolve({
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
        exitCode,
        signal: exitSignal,
        timedOut,
        aborted,
        outputTruncated,
        ...(spawnError ? { spawnError } : {}),
      });
    });
  });
}

/**
 * Output cut at the byte cap ends inside the last thread, maybe inside its last frame: that frame
 * goes (it may lack its build id or source lines) and the thread is marked truncated.
 */
function cutOff(threads: StackThread[]): StackThread[] {
  const last = threads.at(-1);
  if (last) {
    last.frames.pop();
    last.truncated = true;
  }
  return threads;
}

/**
 * Unwinds all threads of `input.core`. Never throws for a bad core, a missing file or a failing,
 * hanging or crashing unwinder: each is an UnwindFailure naming the reason.
 */
export async function unwindCore(input: UnwindInput, params: UnwinderParams = {}): Promise<UnwindResult> {
  const p = { ...UNWINDER_DEFAULTS, ...params };
  const started = p.clock();
  const fail = (
    reason: UnwindFailureReason,
    message: string,
    extra: Partial<Pick<UnwindFailure, 'exitCode' | 'signal' | 'stderr'>> = {},
  ): UnwindFailure => ({ ok: false, reason, message, stderr: '', ...extra, durationMs: p.clock() - started });

  try {
    const why = await notACore(input.core);
    if (why !== undefined) return fail('not-a-core', `${input.core}: ${why}`);
  } catch (error) {
    return fail('core-unreadable', `${input.core}: ${errorText(error)}`);
  }
  try {
    if (!(await stat(input.executable)).isFile())
      return fail('executable-missing', `${input.executable}: not a file`);
  } catch (error) {
    return fail('executable-missing', `${input.executable}: ${errorText(error)}`);
  }

  const dirs = input.debuginfoDirs ?? [];
  const argv = [
    p.prlimitCommand,
    `--as=${p.addressSpaceBytes}`,
    '--core=0',
    p.command,
    '-b',
    '-m',
    '-s',
    '-i',
    '-n',
    String(p.maxFramesPerThread),
    ...(dirs.length > 0 ? [`--debuginfo-path=${dirs.join(':')}`] : []),
    `--executable=${input.executable}`,
    `--core=${input.core}`,
  ];
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    ...debuginfodEnv(params.debuginfod, p.deadlineMs),
  };
  const r = await run(argv, env, p.deadlineMs, p.maxOutputBytes, params.signal);
  const stderr = r.stderr;
  if (r.spawnError) return fail('spawn-failed', `${p.prlimitCommand}: ${r.spawnError.message}`, { stderr });
  if (r.aborted) return fail('aborted', 'the unwind was cancelled; process group killed', { stderr });
  if (r.timedOut)
    return fail('timeout', `no result within ${p.deadlineMs} ms; process group killed`, { stderr });
  const parsed = parseStackText(r.stdout, stderr, p.maxFramesPerThread);
  if (r.outputTruncated && parsed.length > 0) {
    return {
      ok: true,
      threads: cutOff(parsed),
      outputTruncated: true,
      warnings: warningsOf(stderr),
      durationMs: p.clock() - started,
    };
  }
  if (r.outputTruncated)
    return fail('no-threads', `no thread in the first ${p.maxOutputBytes} bytes of output`, { stderr });
  if (r.signal !== null)
    return fail('killed', `unwinder killed by ${r.signal}`, { signal: r.signal, stderr });
  const exitCode = r.exitCode ?? -1;
  // eu-stack: 0 all frames shown, 1 some shown with non-fatal errors (the frame limit counts),
  // 2 none shown or a fatal error, 64 bad arguments; prlimit: 126/127 when it cannot execute.
  if (exitCode >= 2)
    return fail('unwinder-error', firstLine(stderr) ?? `exit status ${exitCode}`, { exitCode, stderr });
  if (parsed.length === 0) return fail('no-threads', 'the unwinder printed no thread', { exitCode, stderr });
  return {
    ok: true,
    threads: parsed,
    outputTruncated: false,
    warnings: warningsOf(stderr),
    durationMs: p.clock() - started,
  };
}

const warningsOf = (stderr: string): string[] => stderr.split('\n').filter((line) => line !== '');
const firstLine = (stderr: string): string | undefined => warningsOf(stderr)[0];
