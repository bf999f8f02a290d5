import { readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { makeDirDurably, writeFileAtomically, type Component } from '@podmortem/contract/runtime';
import { AgentError } from './errors.ts';

// Points the kernel at the handler (kernel.core_pattern, kernel.core_pipe_limit) and puts the
// node's own values back on shutdown. The value found before the first change is backed up in a
// file, and a backup already there is kept: an agent restarted after SIGKILL then finds its
// predecessor's pattern in the kernel, and must restore the original, not that.

export interface KernelSettingsParams {
  /** /proc/sys/kernel on a node. */
  sysctlDir: string;
  /** Where the backups live (a hostPath, so they outlive the agent's pod). */
  stateDir: string;
  corePattern: string;
  corePipeLimit: number;
  logger: Logger;
}

const BACKUP_SUFFIX = '.podmortem-backup';

export class KernelSettings implements Component {
  readonly name = 'kernel-settings';
  private readonly params: KernelSettingsParams;
  private applied = false;

  constructor(params: KernelSettingsParams) {
    this.params = params;
  }

  /** Settings in the order they are applied; restored in reverse. core_pipe_limit comes first so
   *  the handler can read /proc of every crash core_pattern sends it. */
  private settings(): [string, string][] {
    return [
      ['core_pipe_limit', String(this.params.corePipeLimit)],
      ['core_pattern', this.params.corePattern],
    ];
  }

  backupPath(name: string): string {
    return join(this.params.stateDir, name + BACKUP_SUFFIX);
  }

  async start(): Promise<void> {
    await makeDirDurably(this.params.stateDir);
    for (const [name, value] of this.settings()) {
      const current = await this.read(name);
      const backup = await this.readBackup(name);
      if (backup === undefined) {
        await this.writeBackup(name, current);
      } else if (current !== value && current !== backup) {
        this.params.logger.warn(
          { setting: name, current, backup },
          'kernel setting changed since the backup was taken; the backup is kept as the original',
        );
      }
      await this.write(name, value);
      this.params.logger.info(
        { setting: name, value, original: backup ?? current },
        'kernel setting applied',
      );
    }
    this.applied = true;
  }

  async shutdown(): Promise<void> {
    if (!this.applied) return;
    this.applied = false;
    await this.restore();
  }

  /** Puts back every backed-up value and removes the backups. Safe when there are none. */
  async restore(): Promise<void> {
    for (const [name] of this.settings().reverse()) {
      const backup = await this.readBackup(name);
      if (backup === undefined) continue;
      await this.write(name, backup);
      await rm(this.backupPath(name), { force: true });
      this.params.logger.info({ setting: name, value: backup }, 'kernel setting restored');
    }
  }

  private async read(name: string): Promise<string> {
    try {
      return (await readFile(join(this.params.sysctlDir, name), 'utf8')).replace(/\n$/, '');
    } catch (err) {
      throw new AgentError('PM_ERR_SYSCTL', `reading kernel.${name}: ${(err as Error).message}`, {
        cause: err,
      });
    }
  }

  private async write(name: string, value: string): Promise<void> {
    try {
      await writeFile(join(this.params.sysctlDir, name), value);
    } catch (err) {
      throw new AgentError('PM_ERR_SYSCTL', `kernel.${name}=${value}: ${(err as Error).message}`, {
        cause: err,
      });
    }
    // The kernel cuts core_pattern at 127 bytes without a word: a cut pattern runs the wrong thing.
    const now = await this.read(name);
    if (now !== value) {
      throw new AgentError(
        'PM_ERR_SYSCTL',
        `kernel.${name} reads back ${JSON.stringify(now)}, not ${JSON.stringify(value)}`,
      );
    }
  }

  private async readBackup(name: string): Promise<string | undefined> {
    try {
      return await readFile(this.backupPath(name), 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  private writeBackup(name: string, value: string): Promise<void> {
    return writeFileAtomically(this.backupPath(name), value);
  }
}
