import { appendFile, rename, stat, writeFile } from 'node:fs/promises';

// The handler's log: one JSON object per line (pino's shape: level, time, name, msg), appended to a
// file the agent reads. Many handlers append at once; each line is one write on an O_APPEND file,
// so lines do not interleave. When the file cannot be written, the line goes to the kernel log
// (/dev/kmsg) instead, so that no crash passes without a trace. pino itself is not used: the
// handler's start-up time is the crashing process's wait.

const LEVELS = { info: 30, warn: 40, error: 50 } as const;
export type HandlerLogLevel = keyof typeof LEVELS;
/** Beyond this size the log is moved to <file>.1 (one generation kept). */
export const HANDLER_LOG_MAX_BYTES = 16 * 1024 * 1024;

export interface HandlerLog {
  write(level: HandlerLogLevel, msg: string, fields?: Record<string, unknown>): Promise<void>;
}

export function handlerLog(file: string, base: Record<string, unknown>, kmsg = '/dev/kmsg'): HandlerLog {
  return {
    async write(level, msg, fields = {}) {
      const line =
        JSON.stringify({
          level: LEVELS[level],
          time: Date.now(),
          name: 'podmortem-handler',
          ...base,
          ...fields,
          msg,
        }) + '\n';
      try {
        await appendFile(file, line, { mode: 0o600 });
      } catch (err) {
        const prio = level === 'error' ? 3 : level === 'warn' ? 4 : 6;
        const why = (err as Error).message;
        // The kernel log takes lines of about 1 KiB.
        const text = `<${prio}>podmortem-handler: log ${file} unwritable (${why}): ${line.slice(0, 900)}`;
        await writeFile(kmsg, text, { flag: 'a' }).catch(() => undefined);
      }
    },
  };
}

/**
 * Moves an oversized log aside. Two handlers racing here may both rotate, dropping the older
 * generation: the log is for diagnosis, the spool entries are the record.
 */
export async function rotateHandlerLog(file: string, maxBytes = HANDLER_LOG_MAX_BYTES): Promise<void> {
  try {
    if ((await stat(file)).size > maxBytes) await rename(file, file + '.1');
  } catch {
    // Absent (first crash) or already rotated by another handler.
  }
}
