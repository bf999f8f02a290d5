import { spawn } from 'node:child_process';
import { once } from 'node:events';

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
