import { ConfigError, createLogger, logProcessWarnings, runComponents } from '@podmortem/contract/runtime';
import { createAgent } from './agent.ts';
import { loadCollectorConfig } from './config.ts';
import { handlerInstaller } from './handler-installer.ts';

// The collector agent: `node collector/src/agent/main.ts`, configured by PODMORTEM_COLLECTOR_*.

let config;
try {
  config = loadCollectorConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`podmortem-collector: configuration error: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}

const logger = createLogger('podmortem-collector');
logProcessWarnings(logger);
const agent = createAgent({ config, logger, handler: handlerInstaller(config, logger) });
const { started, stop } = runComponents(agent.components, logger, config.shutdownGraceMs);
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.once(signal, () => void stop(signal).then(() => process.exit(0)));
}
started.then(
  () =>
    logger.info(
      { node: config.nodeName, spool: config.spoolDir, storage: config.storageRoot, ops: agent.ops.port },
      'collector agent running',
    ),
  async (err: unknown) => {
    logger.fatal({ err }, 'collector agent failed to start');
    await stop('start failed');
    process.exit(1);
  },
);
