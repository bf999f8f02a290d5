import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';

// kernel.core_pattern is one value for the whole machine: every test (and the demo) that changes
// it holds this exclusive lock for the whole time, so they never overlap. The lock is held by a
// `flock` child whose stdin we keep open; it is released when we close it or when we die.

export const CORE_PATTERN_LOCK = '/tmp/podmortem-core-pattern.lock';

export async function lockCorePattern(): Promise<() => Promise<void>> {
  const child = spawn('flock', ['--exclusive', CORE_PATTERN_LOCK, '-c', 'echo locked; cat >/dev/null'], {
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const [chunk] = (await once(child.stdout, 'data')) as [Buffer];
  if (chunk.toString().trim() !== 'locked') throw new Error(`flock said ${chunk.toString()}`);
  return async () => {
    if (child.exitCode !== null) return;
    child.stdin.end();
    await once(child, 'exit');
  };
}

/**
 * Points the kernel at `pattern` with `core_pipe_limit` (> 0 keeps /proc/<pid> until the handler
 * is done), holding the lock; the returned function puts both values back and releases it.
 */
export async function pointKernelAt(pattern: string, pipeLimit: number): Promise<() => Promise<void>> {
  const unlock = await lockCorePattern();
  const saved = {
    pattern: (await readFile('/proc/sys/kernel/core_pattern', 'utf8')).trimEnd(),
    pipeLimit: (await readFile('/proc/sys/kernel/core_pipe_limit', 'utf8')).trim(),
  };
  await writeFile('/proc/sys/kernel/core_pattern', pattern);
  await writeFile('/proc/sys/kernel/core_pipe_limit', String(pipeLimit));
  return async () => {
    await writeFile('/proc/sys/kernel/core_pattern', saved.pattern);
    await writeFile('/proc/sys/kernel/core_pipe_limit', saved.pipeLimit);
    await unlock();
  };
}
