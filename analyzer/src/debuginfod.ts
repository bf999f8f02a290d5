import { createReadStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { moduleKey } from '@podmortem/contract';
import { messageOf, type Logger } from '@podmortem/contract/runtime';
import { isStoreError, type Store } from '@podmortem/contract/store';
import { AnalyzerError } from './errors.ts';

// Separate debug info from debuginfod servers: the unwinder's libdw asks them (DEBUGINFOD_URLS)
// for the debug file of each module it finds without one, into a cache in the analyzer's work
// folder shared by the crashes (removed at start, so what a killed analyzer left goes; between
// starts the client's own cleaning applies). After an unwind each debug file fetched for a build
// id of the crash's modules is kept once in the store, at _buildid/<build-id>/debuginfo, so the
// query API can hand it to gdb later even when the server has forgotten it.

/** Debug files larger than this are neither fetched (DEBUGINFOD_MAXSIZE) nor stored. */
export const MAX_DEBUGINFO_BYTES = 1024 ** 3;

export interface DebuginfodParams {
  /** Servers, space-separated, as DEBUGINFOD_URLS takes them. */
  urls: string;
  cacheDir: string;
  maxBytes: number;
}

export const debuginfodCacheDir = (workDir: string): string => join(workDir, 'podmortem-debuginfod-cache');

export async function resetDebuginfodCache(cacheDir: string): Promise<void> {
  await rm(cacheDir, { recursive: true, force: true });
  await mkdir(cacheDir, { recursive: true, mode: 0o700 });
}

/** Why `urls` is not a list of http(s) URLs, or undefined when it is one (or empty). */
export function badDebuginfodUrls(urls: string): string | undefined {
  for (const url of urls.split(/\s+/).filter((u) => u !== '')) {
    let parsed: URL;
    try {
      parsed = new URL(url);
    } catch {
      return `${JSON.stringify(url)} is not a URL`;
    }
    if (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')
      return `${JSON.stringify(url)} is not an http or https URL`;
  }
  return undefined;
}

/**
 * The unwinder's debuginfod variables. Each request is bounded by a quarter of the unwind deadline
 * (connection and transfer) and not retried, so one slow server leaves the unwind time to finish
 * without it; the deadline still kills the whole group whatever happens.
 */
export function debuginfodEnv(d: DebuginfodParams | undefined, deadlineMs: number): Record<string, string> {
  if (d === undefined || d.urls.trim() === '') return {};
  const seconds = String(Math.max(1, Math.floor(deadlineMs / 4000)));
  return {
    DEBUGINFOD_URLS: d.urls.trim(),
    DEBUGINFOD_CACHE_PATH: d.cacheDir,
    DEBUGINFOD_TIMEOUT: seconds,
    DEBUGINFOD_MAXTIME: seconds,
    DEBUGINFOD_MAXSIZE: String(d.maxBytes),
    DEBUGINFOD_RETRY_LIMIT: '0',
  };
}

export interface KeptDebuginfo {
  /** Build ids whose debug file was put in the store now. */
  stored: string[];
  /** Build ids whose debug file was in the store already. */
  present: string[];
  /** Build ids whose fetched debug file was not stored, with why. */
  skipped: { buildId: string; reason: 'too-large' | 'store-full'; bytes: number }[];
}

/**
 * Puts each debug file the unwinder fetched into `cacheDir` for one of `buildIds` in the store,
 * once (stat first; put is atomic). An empty file is the client's record of a miss, not a file.
 * Throws a retriable AnalyzerError when the store cannot be written now.
 */
export async function keepDebuginfo(
  store: Store,
  d: DebuginfodParams,
  buildIds: Iterable<string>,
  logger: Pick<Logger, 'info' | 'warn'>,
): Promise<KeptDebuginfo> {
  const kept: KeptDebuginfo = { stored: [], present: [], skipped: [] };
  for (const buildId of new Set(buildIds)) {
    const file = join(d.cacheDir, buildId, 'debuginfo');
    const size = await stat(file).then(
      (s) => (s.isFile() ? s.size : 0),
      () => 0,
    );
    if (size === 0) continue;
    const key = moduleKey(buildId, 'debuginfo');
    if (size > d.maxBytes) {
      kept.skipped.push({ buildId, reason: 'too-large', bytes: size });
      logger.warn({ buildId, bytes: size, maxBytes: d.maxBytes }, 'fetched debug file too large to store');
      continue;
    }
    try {
      await store.stat(key);
      kept.present.push(buildId);
      continue;
    } catch (err) {
      if (!isStoreError(err, 'PM_ERR_STORE_NOT_FOUND'))
        throw new AnalyzerError('PM_ERR_STORE_UNAVAILABLE', `${key}: ${messageOf(err)}`, err);
    }
    try {
      await store.put(key, createReadStream(file));
    } catch (err) {
      if (!isStoreError(err, 'PM_ERR_STORE_FULL'))
        throw new AnalyzerError('PM_ERR_STORE_UNAVAILABLE', `${key}: ${messageOf(err)}`, err);
      kept.skipped.push({ buildId, reason: 'store-full', bytes: size });
      logger.warn({ buildId, bytes: size }, 'no room in the store for a fetched debug file');
      continue;
    }
    kept.stored.push(buildId);
    logger.info({ buildId, bytes: size }, 'debug file from debuginfod kept in the store');
  }
  return kept;
}
