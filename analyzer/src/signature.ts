import { createHash } from 'node:crypto';
import type { StackFrame } from './stack-text.ts';

// Which crashes are the same bug (docs/architecture.md, "Crash signatures"). The signature is
// built from function names only: addresses and offsets move with every rebuild, every -O level
// and every load address, names do not. Frames that say how the process died rather than where
// the bug is (raise, abort, the assertion and signal machinery, the thread and program entry
// points) are skipped, as are frames without a name, the way Sentry and ABRT group native crashes.

/** Functions of the crash machinery, after normalizeFunction: never part of a signature. */
export const CRASH_MACHINERY_FUNCTIONS: readonly string[] = [
  // raise() and abort() and what glibc runs beneath them to deliver the signal
  'raise',
  'gsignal',
  'abort',
  'pthread_kill',
  '__pthread_kill',
  '__pthread_kill_internal',
  '__pthread_kill_implementation',
  // assert()
  '__assert_fail',
  '__assert_fail_base',
  '__assert_perror_fail',
  '__assert',
  // glibc's own fatal checks (heap corruption, _FORTIFY_SOURCE, the stack protector)
  '__libc_message',
  '__libc_message_impl',
  'malloc_printerr',
  '__fortify_fail',
  '__chk_fail',
  '__stack_chk_fail',
  // C++ termination: the frame that matters is the one that threw or called terminate
  'std::terminate()',
  '__cxxabiv1::__terminate(void (*)())',
  '__gnu_cxx::__verbose_terminate_handler()',
  '__cxa_throw',
  '__cxa_rethrow',
  // signal trampolines (x86-64 glibc; the vDSO's on arm64)
  '__restore_rt',
  '__kernel_rt_sigreturn',
  // entry points at the bottom of every stack: they change with the C library, not the bug
  '_start',
  '__libc_start_main',
  '__libc_start_main_impl',
  '__libc_start_call_main',
  'start_thread',
  'clone',
  '__clone',
  'clone3',
  '__clone3',
];

const MACHINERY = new Set(CRASH_MACHINERY_FUNCTIONS);

/** Functions (after the machinery) that make the signature. */
export const SIGNATURE_FRAME_COUNT = 5;

/** Hex digits of SHA-256 kept: 128 bits, far from any collision among a cluster's bugs. */
export const SIGNATURE_HEX_LENGTH = 32;

/**
 * A function name as grouping sees it: without the symbol version a dynamic symbol carries
 * (`__libc_start_main@@GLIBC_2.34`), without the suffixes of the copies GCC makes of a function
 * depending on the -O level (`.cold`, `.part.0`, `.isra.0`, `.constprop.0`, `.lto_priv.0`,
 * `.localalias`), and without glibc's `__GI_` prefix of internal aliases (`__GI_raise`,
 * `__GI___assert_fail`).
 */
export function normalizeFunction(name: string): string {
  const bare = name
    .replace(/@@?[A-Za-z0-9_.]+$/, '')
    .replace(/(?:\.(?:cold|part|isra|constprop|lto_priv|localalias)(?:\.\d+)?)+$/, '');
  return bare.startsWith('__GI_') ? bare.slice('__GI_'.length) : bare;
}

export const isCrashMachinery = (frame: StackFrame): boolean =>
  frame.function !== undefined && MACHINERY.has(normalizeFunction(frame.function));

/** The frames of the crashing thread that say where the bug is, innermost first. */
export function significantFrames(frames: readonly StackFrame[]): StackFrame[] {
  return frames.filter((f) => f.function !== undefined && !isCrashMachinery(f));
}

export interface CrashSignature {
  /** SHA-256 hex (SIGNATURE_HEX_LENGTH digits) of the signal and the frames' names. */
  signature: string;
  /**
   * `functions` when named frames remain; `modules` when none does: then only the signal and the
   * modules of the unnamed frames are left to group by, a coarse group but a stable one.
   */
  basis: 'functions' | 'modules';
  /** E.g. `SIGSEGV in parse_header (segv.c:3)`, or `SIGSEGV at segv+0x1185` when unsymbolized. */
  title: string;
  /** The frames the signature was made of. */
  frames: StackFrame[];
}

const hash = (parts: readonly string[]): string =>
  createHash('sha256').update(parts.join('\n')).digest('hex').slice(0, SIGNATURE_HEX_LENGTH);

const basename = (path: string): string => path.slice(path.lastIndexOf('/') + 1);

function titleOf(signal: string, frames: readonly StackFrame[], named: StackFrame | undefined): string {
  if (named?.function !== undefined) {
    const where =
      named.file !== undefined && named.line !== undefined ? ` (${basename(named.file)}:${named.line})` : '';
    return `${signal} in ${normalizeFunction(named.function)}${where}`;
  }
  const first = frames.find((f) => !isCrashMachinery(f));
  if (first?.module !== undefined && first.offset !== undefined)
    return `${signal} at ${first.module}+0x${first.offset.toString(16)}`;
  return first ? `${signal} at ${first.pc}` : signal;
}

/**
 * The signature and title of a crash from the signal's name (`SIGSEGV`) and the crashing
 * thread's frames, innermost first.
 */
export function crashSignature(signal: string, frames: readonly StackFrame[]): CrashSignature {
  const named = significantFrames(frames).slice(0, SIGNATURE_FRAME_COUNT);
  const title = titleOf(signal, frames, named[0]);
  if (named.length > 0) {
    return {
      signature: hash(['functions', signal, ...named.map((f) => normalizeFunction(f.function ?? ''))]),
      basis: 'functions',
      title,
      frames: named,
    };
  }
  const unnamed = frames.filter((f) => !isCrashMachinery(f)).slice(0, SIGNATURE_FRAME_COUNT);
  return {
    signature: hash(['modules', signal, ...unnamed.map((f) => f.module ?? '?')]),
    basis: 'modules',
    title,
    frames: unnamed,
  };
}
