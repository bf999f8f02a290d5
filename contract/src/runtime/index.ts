export * from './errors.ts';
export * from './retry.ts';
export * from './lifecycle.ts';
export * from './config.ts';
export * from './logger.ts';
export * from './ops-server.ts';
export * from './durable-write.ts';
export * from './kafka.ts';
