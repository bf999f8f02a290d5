import { runService } from '@podmortem/contract/runtime';
import { createAgent } from './agent.ts';
import { loadCollectorConfig } from './config.ts';
import { handlerInstaller } from './handler-installer.ts';

// The collector agent: `node collector/src/agent/main.ts`, configured by PODMORTEM_COLLECTOR_*.

await runService({
  name: 'podmortem-collector',
  loadConfig: () => loadCollectorConfig(),
  startFailedMessage: 'collector agent failed to start',
  build: ({ config, logger }) => {
    const agent = createAgent({ config, logger, handler: handlerInstaller(config, logger) });
    return {
      components: agent.components,
      running: () => ({
        fields: {
          node: config.nodeName,
          spool: config.spoolDir,
          storage: config.storageRoot,
          ops: agent.ops.port,
        },
        message: 'collector agent running',
      }),
    };
  },
});
