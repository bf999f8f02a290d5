export * from './store.ts';
export * from './fs-store.ts';
export * from './memory-store.ts';
export * from './s3-store.ts';
export * from './store-from.ts';
export * from './remove-dump.ts';
