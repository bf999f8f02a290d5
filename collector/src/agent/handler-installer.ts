import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { corePattern } from '../core-pattern.ts';
import type { HandlerConfig } from '../handler-config.ts';
import type { Logger } from 'pino';
import { writeFileAtomically } from '@podmortem/contract/runtime';
import { AgentError } from './errors.ts';
import type { CollectorConfig } from './config.ts';

// Puts the handler where the kernel can run it: a bash wrapper `<dir>/podmortem-handler` that runs
// handler.ts with Node 24 by absolute path (the kernel gives it no PATH and no environment), its
// configuration `<dir>/podmortem-handler.json` beside it, and the core_pattern line naming it.
// The wrapper sends Node's own stderr (start-up failures, before the handler can log) to
// `<dir>/podmortem-handler.stderr`, and keeps Node's compile cache in `<dir>/.node-compile-cache`
// (type stripping of the handler's sources then costs nothing after the first crash).

export const HANDLER_WRAPPER_NAME = 'podmortem-handler';
export const HANDLER_CONFIG_NAME = 'podmortem-handler.json';
/** The handler's entry (run by the wrapper). */
export const HANDLER_ENTRY = fileURLToPath(new URL('../handler/handler.ts', import.meta.url));
const quote = (s: string) => `'${s.replaceAll("'", `'\\''`)}'`;

export function handlerWrapperScript(nodePath: string, entry: string = HANDLER_ENTRY): string {
  return `#!/bin/bash
# podmortem core handler wrapper, run by the kernel through kernel.core_pattern (written by
# installHandler in collector/src/agent/handler-installer.ts). The kernel passes no environment: Node and the
# handler are named by absolute path; the configuration is ${HANDLER_CONFIG_NAME} beside this file.
here=\${0%/*}
export NODE_COMPILE_CACHE="$here/.node-compile-cache"
exec ${quote(nodePath)} --disable-warning=ExperimentalWarning ${quote(entry)} --config "$here/${HANDLER_CONFIG_NAME}" "$@" 2>>"$here/${HANDLER_WRAPPER_NAME}.stderr"
`;
}

export interface InstallHandlerParams {
  /** Folder for the wrapper and its configuration (short: the core_pattern limit is 127 bytes). */
  dir: string;
  config: Partial<HandlerConfig>;
  /** Node 24 binary; defaults to the one running this code. */
  nodePath?: string;
  entry?: string;
}

export interface InstalledHandler {
  handlerPath: string;
  configPath: string;
  corePattern: string;
}

/** Writes the wrapper and its configuration, each atomically (a crash meanwhile sees old or new). */
export async function installHandler(p: InstallHandlerParams): Promise<InstalledHandler> {
  await mkdir(p.dir, { recursive: true, mode: 0o755 });
  const handlerPath = join(p.dir, HANDLER_WRAPPER_NAME);
  const configPath = join(p.dir, HANDLER_CONFIG_NAME);
  const pattern = corePattern(handlerPath);
  await writeFileAtomically(configPath, JSON.stringify(p.config, null, 2) + '\n', { mode: 0o644 });
  await writeFileAtomically(handlerPath, handlerWrapperScript(p.nodePath ?? process.execPath, p.entry), {
    mode: 0o755,
  });
  return { handlerPath, configPath, corePattern: pattern };
}

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
    coreHeadMaxBytes: config.handlerCoreHeadMaxBytes,
    moduleCapture: config.handlerModuleCapture,
    moduleCacheMaxBytes: config.handlerModuleCacheMaxBytes,
    moduleMaxBytes: config.handlerModuleMaxBytes,
    moduleCopyBytes: config.handlerModuleCopyBytes,
    moduleCopyMs: config.handlerModuleCopyMs,
  };
}

export interface HandlerInstall {
  /** Installs the handler where the kernel can run it; returns the core_pattern that runs it. */
  install(): Promise<string>;
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
