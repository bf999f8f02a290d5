export * from './crash-event.ts';
export * from './validate.ts';
export * from './cloudevent.ts';
export * from './crash-id.ts';
export * from './topics.ts';
export * from './storage-layout.ts';
export * from './index-template.ts';
export * from './examples.ts';
