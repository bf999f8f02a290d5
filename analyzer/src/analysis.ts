import type { CrashEvent } from '@podmortem/contract';
import { crashSignature } from './signature.ts';
import type { StackThread } from './stack-text.ts';

type Analysis = NonNullable<CrashEvent['analysis']>;

/** The contract's cap on `analysis.frames`. */
const MAX_EVENT_FRAMES = 256;

/**
 * The crash event's `analysis` part from an unwind: the crashing thread's frames as the contract
 * has them, and its signature and title. Undefined when no thread is marked crashing.
 */
export function analysisOf(signal: string, threads: readonly StackThread[]): Analysis | undefined {
  const crashing = threads.find((t) => t.crashing);
  if (!crashing) return undefined;
  const { signature, title } = crashSignature(signal, crashing.frames);
  const frames = crashing.frames.slice(0, MAX_EVENT_FRAMES).map((f) => ({
    ...(f.module !== undefined ? { module: f.module } : {}),
    ...(f.function !== undefined ? { function: f.function } : {}),
    ...(f.offset !== undefined ? { offset: f.offset } : {}),
    ...(f.build_id !== undefined ? { build_id: f.build_id } : {}),
  }));
  return { frames, signature, title };
}
