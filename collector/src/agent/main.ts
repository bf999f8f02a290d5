import { runService } from '@podmortem/contract/runtime';
import { createAgent } from './agent.ts';
import { CollectorConfigSchema, ENV_PREFIX, loadCollectorConfig } from './config.ts';
import { handlerInstaller } from './handler-installer.ts';

// The collector agent: `node collector/src/agent/main.ts`, configured by PODMORTEM_COLLECTOR_*.

await runService({
  name: 'podmortem-collector',
  about: {
    summary:
      "The collector agent, one per node: it sets the kernel's core_pattern to podmortem's handler, follows the handler's spool, finds each crash's pod through the Kubernetes API, stores the dump and its event, and announces the crash on Kafka and OTLP; a spool entry is deleted only once all of that is acknowledged.",
    schema: CollectorConfigSchema,
    prefix: ENV_PREFIX,
  },
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
