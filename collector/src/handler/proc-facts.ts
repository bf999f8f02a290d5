import { open, readFile, readlink } from 'node:fs/promises';
import type { ProcFacts } from '../spool-entry.ts';
import { withoutDeletedSuffix } from './proc-maps.ts';

// What /proc says about the crashing process while it still exists: the kernel keeps it until the
// handler exits when kernel.core_pipe_limit > 0. Read before the core, while the process is
// certainly still there. Never its environment: that is where secrets live.

const MAX_CMDLINE_BYTES = 64 * 1024;
const MAX_ARGS = 256;
const MAX_ARG_CHARS = 4096;

export class ProcFactsError extends Error {
  constructor(message: string, cause?: unknown) {
    super(message, cause === undefined ? undefined : { cause });
    this.name = 'ProcFactsError';
  }
}

function code(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException).code;
}

async function readHead(path: string, max: number): Promise<Buffer> {
  const file = await open(path, 'r');
  try {
    const buf = Buffer.alloc(max);
    let got = 0;
    for (;;) {
      const { bytesRead } = await file.read(buf, got, max - got, null);
      if (bytesRead === 0 || got + bytesRead >= max) return buf.subarray(0, got + bytesRead);
      got += bytesRead;
    }
  } finally {
    await file.close();
  }
}

export function parseCmdline(raw: Buffer): string[] {
  const parts = raw.toString('utf8').split('\0');
  if (parts.at(-1) === '') parts.pop();
  return parts.slice(0, MAX_ARGS).map((a) => a.slice(0, MAX_ARG_CHARS));
}

export function parseStatus(text: string): { nsPids: number[]; ppid?: number } {
  let nsPids: number[] = [];
  let ppid: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('NSpid:'))
      nsPids = line.slice(6).trim().split(/\s+/).map(Number).filter(Number.isInteger);
    else if (line.startsWith('PPid:')) ppid = Number(line.slice(5).trim());
  }
  return ppid === undefined || !Number.isInteger(ppid) ? { nsPids } : { nsPids, ppid };
}

export interface ReadProcFactsOptions {
  /** The crashing thread (%I): with `comm`, checks that the pid was not reused by another process. */
  tid?: number;
  /** The crashing thread's comm as the kernel gave it (%e, '/' written as '!'). */
  comm?: string;
  procRoot?: string;
}

export async function readProcFacts(pid: number, options: ReadProcFactsOptions = {}): Promise<ProcFacts> {
  const dir = `${options.procRoot ?? '/proc'}/${pid}`;
  const gone = (err: unknown) =>
    code(err) === 'ENOENT' || code(err) === 'ESRCH'
      ? new ProcFactsError(`process ${pid} had exited before the handler read ${dir}`, err)
      : new ProcFactsError(`could not read ${dir}: ${(err as Error).message}`, err);
  try {
    const [cgroup, cmdline, comm, status] = await Promise.all([
      readFile(`${dir}/cgroup`, 'utf8'),
      readHead(`${dir}/cmdline`, MAX_CMDLINE_BYTES),
      readFile(`${dir}/comm`, 'utf8'),
      readFile(`${dir}/status`, 'utf8'),
    ]);
    if (options.tid && options.comm) {
      let threadComm: string;
      try {
        threadComm = (await readFile(`${dir}/task/${options.tid}/comm`, 'utf8')).replace(/\n$/, '');
      } catch (err) {
        throw new ProcFactsError(
          `thread ${options.tid} is not in ${dir}: the pid was reused by another process`,
          err,
        );
      }
      if (threadComm.replaceAll('/', '!') !== options.comm)
        throw new ProcFactsError(
          `${dir} is now another process (thread ${options.tid} is ${JSON.stringify(threadComm)}, the kernel said ${JSON.stringify(options.comm)})`,
        );
    }
    let exe: string | undefined;
    try {
      exe = await readlink(`${dir}/exe`);
    } catch {
      // No executable link (kernel thread, or already released): the kernel's %E remains.
    }
    const facts: ProcFacts = {
      cgroup,
      cmdline: parseCmdline(cmdline),
      comm: comm.replace(/\n$/, ''),
      ...parseStatus(status),
    };
    if (exe !== undefined) {
      const link = withoutDeletedSuffix(exe);
      facts.exe = link.path;
      if (link.deleted) facts.exeDeleted = true;
    }
    return facts;
  } catch (err) {
    if (err instanceof ProcFactsError) throw err;
    throw gone(err);
  }
}
