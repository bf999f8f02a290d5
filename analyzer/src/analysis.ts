import type { AnalysisResult, CrashEvent } from '@podmortem/contract';
import { crashSignature } from './signature.ts';
import type { StackFrame, StackThread } from './stack-text.ts';

export type Analysis = AnalysisResult;
type Frame = NonNullable<NonNullable<CrashEvent['analysis']>['frames']>[number];
type Thread = NonNullable<AnalysisResult['threads']>[number];

/** The contract's cap on `analysis.frames` (and on the frames of each thread). */
const MAX_EVENT_FRAMES = 256;
/** The contract's cap on `analysis.threads`. */
const MAX_EVENT_THREADS = 1024;

/** A frame as the contract has it: no pc (a load address, different in every run). */
function frameOf(f: StackFrame): Frame {
  return {
    ...(f.module !== undefined ? { module: f.module } : {}),
    ...(f.function !== undefined ? { function: f.function } : {}),
    ...(f.offset !== undefined ? { offset: f.offset } : {}),
    ...(f.build_id !== undefined ? { build_id: f.build_id } : {}),
    ...(f.file !== undefined ? { file: f.file } : {}),
    ...(f.line !== undefined ? { line: f.line } : {}),
    ...(f.column !== undefined ? { column: f.column } : {}),
  };
}

/**
 * The crash event's `analysis` part from an unwind: the crashing thread's frames as the contract
 * has them, and its signature and title. Undefined when no thread is marked crashing.
 */
export function analysisOf(
  signal: string,
  threads: readonly StackThread[],
): Pick<Analysis, 'frames' | 'signature' | 'title'> | undefined {
  const crashing = threads.find((t) => t.crashing);
  if (!crashing) return undefined;
  const { signature, title } = crashSignature(signal, crashing.frames);
  return { frames: crashing.frames.slice(0, MAX_EVENT_FRAMES).map(frameOf), signature, title };
}

/** Every thread of an unwind as the contract has them, the crashing one first. */
export function threadsOf(threads: readonly StackThread[]): Thread[] {
  return threads.slice(0, MAX_EVENT_THREADS).map((t) => ({
    tid: t.tid,
    crashing: t.crashing,
    truncated: t.truncated,
    ...(t.error !== undefined ? { error: t.error } : {}),
    frames: t.frames.slice(0, MAX_EVENT_FRAMES).map(frameOf),
  }));
}
