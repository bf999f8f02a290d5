import { join } from 'node:path';
import type { Logger } from 'pino';
import { AgentError } from './errors.ts';
import type { HandlerInstall } from './agent.ts';
import type { CollectorConfig } from './config.ts';
import type { HandlerConfig } from './handler-config.ts';
import { installHandler } from './handler-install.ts';

// The agent installs the handler from its own configuration: the handler's settings (spool,
// limits, log) are written beside the wrapper, so both agree on the spool and the log.

export function handlerLogPath(config: CollectorConfig): string {
  return config.handlerLogFile !== '' ? config.handlerLogFile : join(config.spoolDir, 'handler.log');
}

export function handlerConfigOf(config: CollectorConfig): HandlerConfig {
  return {
    spoolDir: config.spoolDir,
    logFile: handlerLogPath(config),
    nodeName: config.nodeName,
    maxCoreBytes: config.handlerMaxCoreBytes,
    compression: config.handlerCompression,
    zstdLevel: 3,
    rateLimitDumps: config.handlerRateLimitDumps,
    rateLimitWindowSeconds: config.handlerRateLimitWindowSeconds,
    minFreeBytes: config.handlerMinFreeBytes,
    deadlineSeconds: config.handlerDeadlineSeconds,
  };
}

export function handlerInstaller(config: CollectorConfig, logger: Logger): HandlerInstall {
  return {
    async install() {
      try {
        const installed = await installHandler({
          dir: config.handlerInstallDir,
          config: handlerConfigOf(config),
        });
        logger.info(
          { handler: installed.handlerPath, corePattern: installed.corePattern },
          'handler installed',
        );
        return installed.corePattern;
      } catch (err) {
        throw new AgentError(
          'PM_ERR_HANDLER_INSTALL',
          `${config.handlerInstallDir}: ${(err as Error).message}`,
          { cause: err },
        );
      }
    },
  };
}
