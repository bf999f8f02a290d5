import { randomUUID } from 'node:crypto';
import { mkdir, readFile, rename, stat, unlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
// The subpath alone: the kernel starts a handler per crash, and the whole runtime (pino, ajv) would
// slow each start.
import { writeJsonAtomically } from '@podmortem/contract/runtime/durable-write';

// Per-container rate limit on kept dumps, shared by every handler process on the node (one per
// crash, possibly hundreds at once). The state is a small JSON file in the spool, changed under a
// lock file made with O_EXCL: {key: [times of the dumps kept within the window]}. A lock left by a
// handler that died holding it is broken after `staleLockMs` (far longer than any holder needs).
// Breaking a stale lock can race with another handler doing the same; at worst two handlers then
// update at once and one more (or one fewer) dump is kept than the limit says. A crash is never
// lost to it: a handler that cannot get the lock in time keeps no dump and records why.

export const RATE_STATE_DIR = '.handler-state';

export interface DumpSlotParams {
  spoolDir: string;
  key: string;
  maxDumps: number;
  windowMs: number;
  now?: number;
  lockTimeoutMs?: number;
  staleLockMs?: number;
}

export interface DumpSlot {
  allowed: boolean;
  /** Dumps kept for this key within the window, before this one. */
  recent: number;
  /** Why the state was reset (it was unreadable), if it was. */
  stateProblem?: string;
}

interface RateState {
  version: 1;
  keys: Record<string, number[]>;
}

/**
 * How long a handler waits for the lock, and when a lock counts as left by a dead handler. A holder
 * needs milliseconds, but in a storm hundreds of handler processes share the node's cores and a
 * holder may wait its turn for seconds: both stay far above that, and far below the deadline.
 */
const LOCK_TIMEOUT_MS = 30_000;
const STALE_LOCK_MS = 15_000;
/** Waiters poll the lock with a growing pause, so that a storm of them leaves the CPU to the holder. */
const POLL_FIRST_MS = 1;
const POLL_MAX_MS = 50;

/** Most keys remembered; the least recently used go first. */
const MAX_KEYS = 4096;
const HEX64 = /[0-9a-f]{64}/g;

/**
 * The rate-limit key of a crash: the innermost 64-hex container id of its cgroup (containerd,
 * CRI-O and Docker all name containers so), else its executable, else 'unknown'.
 */
export function rateLimitKey(cgroup: string | undefined, exePath: string | undefined): string {
  const ids = cgroup?.match(HEX64);
  const id = ids?.at(-1);
  if (id !== undefined) return `container:${id}`;
  if (exePath) return `exe:${exePath}`;
  return 'unknown';
}

export async function takeDumpSlot(p: DumpSlotParams): Promise<DumpSlot> {
  const dir = join(p.spoolDir, RATE_STATE_DIR);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const lock = join(dir, 'ratelimit.lock');
  const file = join(dir, 'ratelimit.json');
  const token = await acquire(lock, p.lockTimeoutMs ?? LOCK_TIMEOUT_MS, p.staleLockMs ?? STALE_LOCK_MS);
  try {
    const now = p.now ?? Date.now();
    let state: RateState = { version: 1, keys: {} };
    let stateProblem: string | undefined;
    try {
      const parsed = JSON.parse(await readFile(file, 'utf8')) as { version?: unknown; keys?: unknown } | null;
      if (parsed?.version === 1 && typeof parsed.keys === 'object' && parsed.keys !== null)
        state = parsed as RateState;
      else stateProblem = `${file} has an unknown shape: reset`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT')
        stateProblem = `${file} unreadable (${(err as Error).message}): reset`;
    }
    const since = now - p.windowMs;
    const keys: Record<string, number[]> = {};
    for (const [k, times] of Object.entries(state.keys)) {
      const kept = Array.isArray(times)
        ? times.filter((t) => typeof t === 'number' && t > since && t <= now)
        : [];
      if (kept.length > 0) keys[k] = kept;
    }
    const recent = keys[p.key]?.length ?? 0;
    const allowed = recent < p.maxDumps;
    if (allowed) keys[p.key] = [...(keys[p.key] ?? []), now];
    const entries = Object.entries(keys);
    if (entries.length > MAX_KEYS) {
      entries.sort((a, b) => Math.max(...b[1]) - Math.max(...a[1]));
      entries.length = MAX_KEYS;
    }
    // Lost with the machine is fine (the window starts again), torn is not.
    await writeJsonAtomically(
      file,
      { version: 1, keys: Object.fromEntries(entries) },
      { durability: 'process-crash' },
    );
    return stateProblem === undefined ? { allowed, recent } : { allowed, recent, stateProblem };
  } finally {
    await release(lock, token);
  }
}

async function acquire(lock: string, timeoutMs: number, staleMs: number): Promise<string> {
  const token = `${process.pid} ${randomUUID()}`;
  const deadline = Date.now() + timeoutMs;
  let pauseMs = POLL_FIRST_MS;
  for (;;) {
    try {
      await writeFile(lock, token, { flag: 'wx', mode: 0o600 });
      return token;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
    }
    try {
      const st = await stat(lock);
      if (Date.now() - st.mtimeMs > staleMs) {
        // Moved aside under a name of our own, so only one handler removes this stale lock.
        const aside = `${lock}.stale-${process.pid}`;
        await rename(lock, aside);
        await unlink(aside);
        continue;
      }
    } catch {
      // Released (or broken) meanwhile: try again at once.
      continue;
    }
    if (Date.now() > deadline)
      throw new Error(`the rate-limit lock ${lock} stayed taken for ${timeoutMs} ms`);
    await sleep(pauseMs * (0.5 + Math.random()));
    pauseMs = Math.min(POLL_MAX_MS, pauseMs * 2);
  }
}

async function release(lock: string, token: string): Promise<void> {
  try {
    if ((await readFile(lock, 'utf8')) === token) await unlink(lock);
  } catch {
    // Broken as stale by another handler: nothing to release.
  }
}
