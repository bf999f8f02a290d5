import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

// Every file podmortem replaces or publishes goes through here, so the rules live in one place:
//   - the content is written under a temporary name in the same folder (a rename is atomic only
//     within one filesystem), so a reader sees the old file or the new one, never half of one;
//   - with 'power-loss' durability the file is fsynced before the rename (else, after a power
//     loss, the new name can point at empty blocks) and its folder after it (else the rename
//     itself can be lost); 'process-crash' skips both fsyncs, for state that may be lost with
//     the machine but must never be torn (the handler's rate-limit window);
//   - a new folder is durable only once its parent is synced, up to the first folder that existed;
//   - a failed write removes its temporary file, so a full disk does not fill up with them.

export const TMP_PREFIX = '.tmp-';

export type Durability = 'power-loss' | 'process-crash';

export interface AtomicWriteOptions {
  /** File mode of the new file; 0600 unless given. */
  mode?: number;
  /** Default 'power-loss'. */
  durability?: Durability;
  /** Temporary path (same folder); `temporaryPath(path)` unless given. */
  tmp?: string;
}

/** `<dir>/.tmp-<random>-<name>`: unique per writer, and skipped by readers that ignore TMP_PREFIX. */
export function temporaryPath(path: string): string {
  return join(dirname(path), `${TMP_PREFIX}${randomBytes(6).toString('hex')}-${basename(path)}`);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Replaces `path` with `data`, atomically. */
export async function writeFileAtomically(
  path: string,
  data: string | Uint8Array,
  options: AtomicWriteOptions = {},
): Promise<void> {
  const tmp = options.tmp ?? temporaryPath(path);
  const mode = options.mode ?? 0o600;
  await removeOnFailure(tmp, async () => {
    const file = await open(tmp, 'w', mode);
    try {
      await file.writeFile(data);
      // The mode given to open() is cut by the umask; the file must have exactly `mode`.
      await file.chmod(mode);
      if (options.durability !== 'process-crash') await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  });
  if (options.durability !== 'process-crash') await fsyncDir(dirname(path));
}

export function writeJsonAtomically(path: string, value: unknown, options: AtomicWriteOptions = {}) {
  return writeFileAtomically(path, JSON.stringify(value), options);
}

/**
 * Publishes a file written (streamed) under the temporary name `tmp` as `path`: fsync, mode,
 * rename, fsync of the folder. `tmp` is removed if any of it fails.
 */
export async function commitFile(tmp: string, path: string, options: { mode?: number } = {}): Promise<void> {
  await removeOnFailure(tmp, async () => {
    const file = await open(tmp, 'r+');
    try {
      if (options.mode !== undefined) await file.chmod(options.mode);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(tmp, path);
  });
  await fsyncDir(dirname(path));
}

/** Writes a temporary file with `write(tmp)` and publishes it as `path` (see commitFile). */
export async function writeStreamAtomically(
  path: string,
  write: (tmp: string) => Promise<void>,
  options: { mode?: number; tmp?: string } = {},
): Promise<void> {
  const tmp = options.tmp ?? temporaryPath(path);
  await removeOnFailure(tmp, () => write(tmp));
  await commitFile(tmp, path, options.mode === undefined ? {} : { mode: options.mode });
}

/** mkdir -p whose new folders survive a power loss: each new one's parent is fsynced. */
export async function makeDirDurably(dir: string, mode = 0o700): Promise<void> {
  const first = await mkdir(dir, { recursive: true, mode });
  if (first === undefined) return;
  for (let d = dir; d.length >= first.length; d = dirname(d)) await fsyncDir(dirname(d));
}

async function removeOnFailure(tmp: string, work: () => Promise<void>): Promise<void> {
  try {
    await work();
  } catch (err) {
    await rm(tmp, { force: true }).catch(() => undefined);
    throw err;
  }
}
