import { execFile } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, mkdtemp, open } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { promisify } from 'node:util';
import { moduleKey, type CrashEvent } from '@podmortem/contract';
import { isStoreError, type Store } from '@podmortem/contract/store';
import { messageOf } from '@podmortem/contract/runtime';
import { removeCrashFiles } from './crash-files.ts';
import { debuginfodEnv, type DebuginfodParams } from './debuginfod.ts';
import { AnalyzerError } from './errors.ts';
import type { StackFrame } from './stack-text.ts';

// The best a crash without a dump allows (its dump skipped for the rate limit, a quota or free
// space): the top frame of the crashing thread, from its instruction pointer (read by the
// collector from the core's notes while the core streamed by) and the module map (read from
// /proc at crash time). The module whose range holds the pc names the frame, with its build id
// and the pc's offset in it. When the collector captured that module, elfutils' eu-addr2line names
// the function and source line from it, from its stored debug file, or from debuginfod, as the
// unwinder would. No stack means no caller: one frame, never a signature (docs/architecture.md,
// "Crash signatures").

const run = promisify(execFile);

export interface PcFrameParams {
  store: Store;
  workDir: string;
  /** Bytes the module and its debug file may take on the work folder. */
  maxBytes: number;
  /** Wall-clock limit of eu-addr2line; its process is killed then. */
  deadlineMs: number;
  /** RLIMIT_AS of eu-addr2line. */
  addressSpaceBytes: number;
  debuginfod?: DebuginfodParams;
  signal: AbortSignal;
  /** The eu-addr2line executable. Default `eu-addr2line`. */
  command?: string;
}

export interface PcFrame {
  frame: StackFrame;
  /** What kept the frame from being named, a sentence; absent when it has a function. */
  problem?: string;
}

type Module = NonNullable<NonNullable<CrashEvent['analysis']>['modules']>[number];

const PT_LOAD = 1;

/** The mapped module holding `pc`, by the ranges the collector recorded. */
function moduleAt(modules: readonly Module[], pc: bigint): Module | undefined {
  return modules.find((m) => m.start && m.end && BigInt(m.start) <= pc && pc < BigInt(m.end));
}

/**
 * The address the module's own symbols use for the byte mapped at its lowest address: the first
 * loadable segment's p_vaddr less its p_offset (0 for a shared object or a PIE, the link address
 * for a fixed-address executable). Undefined for no 64-bit little-endian ELF file.
 */
async function fileAddressOfStart(path: string): Promise<bigint | undefined> {
  const file = await open(path, 'r');
  try {
    const eh = Buffer.alloc(64);
    await file.read(eh, 0, 64, 0);
    if (eh.readUInt32BE(0) !== 0x7f454c46 || eh[4] !== 2 || eh[5] !== 1) return undefined;
    const phoff = Number(eh.readBigUInt64LE(32));
    const phentsize = eh.readUInt16LE(54);
    const phnum = eh.readUInt16LE(56);
    const ph = Buffer.alloc(phentsize * phnum);
    await file.read(ph, 0, ph.length, phoff);
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      if (ph.readUInt32LE(at) === PT_LOAD) return ph.readBigUInt64LE(at + 16) - ph.readBigUInt64LE(at + 8);
    }
    return undefined;
  } finally {
    await file.close();
  }
}

/** A store object copied to `path`, unless the store has none under `key` or it is too large. */
async function fetchObject(
  store: Store,
  key: string,
  path: string,
  maxBytes: number,
  signal: AbortSignal,
): Promise<'copied' | 'missing' | 'too-large'> {
  try {
    if ((await store.stat(key)).size > maxBytes) return 'too-large';
    const { body } = await store.get(key);
    await pipeline(body, createWriteStream(path, { flags: 'wx', mode: 0o600 }), { signal });
    return 'copied';
  } catch (err) {
    signal.throwIfAborted();
    if (isStoreError(err, 'PM_ERR_STORE_NOT_FOUND')) return 'missing';
    throw new AnalyzerError('PM_ERR_STORE_UNAVAILABLE', `${key}: ${messageOf(err)}`, err);
  }
}

/** eu-addr2line's two lines for one address: the function, then file:line[:column] ('??' unknown). */
function parseAddr2line(stdout: string): Pick<StackFrame, 'function' | 'file' | 'line' | 'column'> {
  const [fn = '??', where = '??:0'] = stdout.split('\n');
  const at = /^(.+?):(\d+)(?::(\d+))?$/.exec(where);
  const file = at?.[1] !== undefined && at[1] !== '??' ? at[1] : undefined;
  const line = Number(at?.[2] ?? 0);
  const column = Number(at?.[3] ?? 0);
  return {
    ...(fn !== '??' && fn !== '' ? { function: fn } : {}),
    ...(file !== undefined ? { file } : {}),
    ...(file !== undefined && line > 0 ? { line } : {}),
    ...(file !== undefined && column > 0 ? { column } : {}),
  };
}

/**
 * The crashing thread's top frame, or undefined when the event has no pc. Throws only a retriable
 * AnalyzerError (the store unreadable now) or the caller's abort.
 */
export async function pcFrame(event: CrashEvent, p: PcFrameParams): Promise<PcFrame | undefined> {
  const pcText = event.registers?.pc;
  if (pcText === undefined) return undefined;
  const pc = BigInt(pcText);
  const module = moduleAt(event.analysis?.modules ?? [], pc);
  if (!module?.start) return { frame: { pc: pcText }, problem: `the pc ${pcText} is in no mapped module` };
  const offset = pc - BigInt(module.start);
  const frame: StackFrame = {
    pc: pcText,
    module: module.path.split('/').at(-1) ?? module.path,
    offset: Number(offset),
    ...(module.build_id ? { build_id: module.build_id } : {}),
  };
  if (!module.build_id) return { frame, problem: `${module.path} has no build id` };

  const dir = await mkdtemp(join(p.workDir, `podmortem-analyzer-${process.pid}-`));
  try {
    const exe = join(dir, 'module');
    const copied = await fetchObject(p.store, moduleKey(module.build_id), exe, p.maxBytes, p.signal);
    if (copied === 'missing') return { frame, problem: `${module.path} was not captured` };
    if (copied === 'too-large')
      return { frame, problem: `${module.path} is larger than the ${p.maxBytes} temporary bytes allowed` };
    const debugDir = join(dir, 'debug');
    const debugPath = join(debugDir, '.build-id', module.build_id.slice(0, 2), module.build_id.slice(2));
    await mkdir(join(debugPath, '..'), { recursive: true });
    // Without a stored debug file, the module's own symbols and debuginfod remain.
    await fetchObject(
      p.store,
      moduleKey(module.build_id, 'debuginfo'),
      `${debugPath}.debug`,
      p.maxBytes,
      p.signal,
    );

    const base = await fileAddressOfStart(exe);
    if (base === undefined) return { frame, problem: `${module.path} is no 64-bit ELF file` };
    const address = '0x' + (base + offset).toString(16);
    const env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      ...debuginfodEnv(p.debuginfod, p.deadlineMs),
    };
    let stdout: string;
    try {
      ({ stdout } = await run(
        'prlimit',
        [
          `--as=${p.addressSpaceBytes}`,
          '--core=0',
          p.command ?? 'eu-addr2line',
          '-f',
          '-C',
          `--debuginfo-path=${debugDir}`,
          '-e',
          exe,
          address,
        ],
        { env, timeout: p.deadlineMs, killSignal: 'SIGKILL', maxBuffer: 64 * 1024, signal: p.signal },
      ));
    } catch (err) {
      p.signal.throwIfAborted();
      return { frame, problem: `eu-addr2line failed: ${messageOf(err)}` };
    }
    const named = { ...frame, ...parseAddr2line(stdout) };
    return named.function
      ? { frame: named }
      : { frame: named, problem: `no symbol for ${address} in ${module.path}` };
  } finally {
    await removeCrashFiles(dir);
  }
}
