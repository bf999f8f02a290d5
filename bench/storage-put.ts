import type { CrashEvent } from '@podmortem/contract';
import { storeFrom, type StoreSettings } from '@podmortem/contract/store';
import { StorageWriter } from '../collector/src/agent/storage-writer.ts';

// bench:storage's uploader: a crash stored as the collector stores it (its store built by
// storeFrom() from the collector's settings, its StorageWriter putting the spooled .core.zst, then
// the event), in a process loading only that, so its peak RSS is the upload's. Without a core path
// only the event is stored: the process's cost without a dump. Prints the time, the peak RSS and
// the stored event as JSON.
//
//   node bench/storage-put.ts '<StoreSettings JSON>' '<draft CrashEvent JSON>' [spooled .core.zst]

const [settingsJson = '{}', draftJson = '{}', corePath] = process.argv.slice(2);
const writer = new StorageWriter({
  store: storeFrom(JSON.parse(settingsJson) as StoreSettings),
  minFreeBytes: 0,
});
const started = performance.now();
const event = await writer.store(
  JSON.parse(draftJson) as CrashEvent,
  corePath === undefined ? undefined : { path: corePath, compression: 'zstd' },
);
console.log(
  JSON.stringify({
    ms: performance.now() - started,
    maxRssBytes: process.resourceUsage().maxRSS * 1024,
    event,
  }),
);
// The store's client keeps its connections open.
process.exit(0);
