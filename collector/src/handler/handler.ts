/**
 * podmortem core handler: run by the kernel once per crash through kernel.core_pattern, on the
 * host, outside any pod, with the core on stdin and an EMPTY environment. It does the least work
 * that is safe and leaves everything that can wait to the agent (docs/architecture.md §1).
 *
 * Invocation (see args.ts and ../core-pattern.ts; ../agent/handler-installer.ts writes the wrapper and builds the pattern):
 *   core_pattern  |<dir>/podmortem-handler %P %p %I %i %s %t %c %e %E %h %u %g
 *   <dir>/podmortem-handler  a bash wrapper that runs this file with Node 24 by absolute path:
 *                            node handler.ts --config <dir>/podmortem-handler.json <kernel args>
 *
 * Configuration: the JSON file named by --config, i.e. podmortem-handler.json NEXT TO THE WRAPPER;
 * without --config, /etc/podmortem/handler.json. Keys and defaults: handler-config.ts
 * (spoolDir /var/lib/podmortem/spool, logFile <spoolDir>/handler.log, maxCoreBytes, compression,
 * rate limit, free-space floor, deadline). A bad or missing file never loses a crash: defaults.
 *
 * Per crash it:
 *   1. reads /proc/<pid> (cgroup, cmdline, comm, exe, NSpid, PPid; never environ) first, while the
 *      kernel still holds the process (kernel.core_pipe_limit > 0);
 *   2. decides whether to keep a dump: not for an empty core, not below the spool's free-space
 *      floor, not past the per-container rate limit (each recorded as dump.status=skipped + reason);
 *   3. streams the core from stdin through sha256 and zstd into <spool>/.tmp-<id>.core.zst in
 *      constant memory, keeping at most maxCoreBytes (then truncated, still draining stdin so the
 *      kernel is not blocked, and recording the full size), fsyncs and renames it; the core's
 *      headers and notes are kept on the way (core-head.ts) and go into the meta when the dump is
 *      not stored whole, so a skipped crash still has its signal code, fault address and registers;
 *   4. lists every mapped ELF module from /proc/<pid>/maps (path, build id, ranges, deleted) and
 *      copies each build id new to the node into <spool>/modules/, within a time and byte budget
 *      and the cache's cap (modules.ts) — after the core, which the kernel sends meanwhile;
 *   5. writes <spool>/<id>.meta.json atomically, last: its presence means the entry is complete;
 *   6. appends one JSON line about the crash to the handler log (or /dev/kmsg if that fails).
 * It stops reading at `deadlineSeconds` (keeping what it has), and gives up entirely 10 s later,
 * writing a `failed` meta, so the kernel is never blocked indefinitely.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdir, statfs } from 'node:fs/promises';
import { hostname } from 'node:os';
import { newCrashId } from '@podmortem/contract/crash-id';
import { CoreHead, keepingHead } from './core-head.ts';
import { pipeInput, writeCore, type CoreInput } from './core-writer.ts';
import { askedOfHandler, parseHandlerArgs } from './args.ts';
import { DEFAULT_HANDLER_CONFIG_PATH, loadHandlerConfig, type HandlerConfig } from '../handler-config.ts';
import { handlerLog, rotateHandlerLog, type HandlerLog } from './log.ts';
import { captureModules, type ModuleCaptureSummary } from './modules.ts';
import { readProcFacts } from './proc-facts.ts';
import { handlerUsage } from './usage.ts';
import { rateLimitKey, takeDumpSlot } from './rate-limit.ts';
import {
  publishSpoolCore,
  spoolCoreTemporary,
  writeSpoolMeta,
  writeSpoolMetaNow,
  type SpoolDump,
  type SpoolMeta,
} from '../spool-entry.ts';

/** How often (in kept bytes) the free space of the spool is checked again while a core is written. */
const SPACE_CHECK_BYTES = 8 * 1024 * 1024;
/** After the soft deadline, how long the handler may still take to write what it has. */
const GRACE_MS = 10_000;

function collectorVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as {
      version?: string;
    };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

async function freeBytes(dir: string): Promise<number> {
  const s = await statfs(dir);
  return s.bavail * s.bsize;
}

async function spaceProblem(config: HandlerConfig): Promise<string | undefined> {
  const free = await freeBytes(config.spoolDir);
  return free < config.minFreeBytes
    ? `spool free space ${free} bytes is below the floor of ${config.minFreeBytes} bytes`
    : undefined;
}

interface CaptureParams {
  config: HandlerConfig;
  input: CoreInput;
  crashId: string;
  rateKey: string;
  log: HandlerLog;
}

async function drain(input: CoreInput): Promise<number> {
  let bytes = 0;
  for (let chunk = await input.next(); chunk; chunk = await input.next()) bytes += chunk.length;
  return bytes;
}

async function capture(p: CaptureParams): Promise<SpoolDump> {
  const { config, input } = p;
  const base = { compression: config.compression, limitBytes: config.maxCoreBytes, storedBytes: 0 } as const;
  const first = await input.next();
  if (first === undefined && input.timedOut)
    return {
      ...base,
      status: 'failed',
      sizeBytes: 0,
      reason: `deadline: no core byte within ${config.deadlineSeconds} s`,
    };
  if (first === undefined) {
    const why = input.error
      ? `no core on stdin (${input.error.message})`
      : 'empty core: the kernel sent no bytes';
    return { ...base, status: 'skipped', sizeBytes: 0, reason: why };
  }

  let skip: string | undefined;
  if (config.maxCoreBytes === 0) skip = 'dumps are off (maxCoreBytes is 0)';
  if (skip === undefined) {
    try {
      skip = await spaceProblem(config);
    } catch (err) {
      skip = `spool free space unknown (${(err as Error).message})`;
    }
  }
  if (skip === undefined) {
    try {
      const slot = await takeDumpSlot({
        spoolDir: config.spoolDir,
        key: p.rateKey,
        maxDumps: config.rateLimitDumps,
        windowMs: config.rateLimitWindowSeconds * 1000,
      });
      if (slot.stateProblem) await p.log.write('warn', slot.stateProblem);
      if (!slot.allowed)
        skip = `rate limit: ${slot.recent} dumps already kept for ${p.rateKey} in the last ${config.rateLimitWindowSeconds} s (limit ${config.rateLimitDumps})`;
    } catch (err) {
      skip = `rate limit state unavailable (${(err as Error).message}): no dump kept`;
    }
  }
  if (skip !== undefined) {
    const size = first.length + (await drain(input));
    return {
      ...base,
      status: 'skipped',
      sizeBytes: size,
      reason: input.timedOut ? `${skip}; stopped reading at the deadline` : skip,
    };
  }

  let pending: Buffer | undefined = first;
  const result = await writeCore({
    input: {
      next: async () => {
        if (pending) {
          const f = pending;
          pending = undefined;
          return f;
        }
        return input.next();
      },
      get timedOut() {
        return input.timedOut;
      },
      get error() {
        return input.error;
      },
    },
    path: spoolCoreTemporary(config.spoolDir, p.crashId),
    limitBytes: config.maxCoreBytes,
    compression: config.compression,
    zstdLevel: config.zstdLevel,
    checkSpace: () => spaceProblem(config).catch(() => undefined),
    spaceCheckBytes: SPACE_CHECK_BYTES,
  });
  const sizes = { sizeBytes: result.sizeBytes, storedBytes: result.storedBytes };
  if (result.writeError)
    return {
      ...base,
      ...sizes,
      status: 'failed',
      reason: `spool write failed: ${result.writeError.message}`,
    };
  try {
    await publishSpoolCore(config.spoolDir, p.crashId);
  } catch (err) {
    return {
      ...base,
      sizeBytes: result.sizeBytes,
      status: 'failed',
      reason: `spool rename failed: ${(err as Error).message}`,
    };
  }
  const dump: SpoolDump = { ...base, ...sizes, status: 'stored', sha256: result.sha256 };
  const kept = `kept the first ${result.keptBytes} of ${result.sizeBytes} bytes`;
  if (input.error) {
    dump.status = 'truncated';
    dump.reason = `reading the core failed after ${result.sizeBytes} bytes (${input.error.message})`;
  } else if (result.stopped === 'limit') {
    dump.status = 'truncated';
    dump.reason = `size limit ${config.maxCoreBytes} bytes: ${kept}`;
  } else if (result.stopped?.startsWith('space: ')) {
    dump.status = 'truncated';
    dump.reason = `${result.stopped.slice(7)}: ${kept}`;
  } else if (result.stopped === 'deadline') {
    dump.status = 'truncated';
    dump.reason = `deadline: stopped reading after ${config.deadlineSeconds} s and ${result.sizeBytes} bytes; the kernel was still sending`;
  }
  return dump;
}

export async function runHandler(argv: string[]): Promise<number> {
  const startedAt = Math.floor(performance.timeOrigin);
  const crashId = newCrashId(startedAt);
  const args = parseHandlerArgs(argv);
  const { kernel } = args;
  const { config, problems } = await loadHandlerConfig(args.configPath ?? DEFAULT_HANDLER_CONFIG_PATH);
  const spoolProblem = await mkdir(config.spoolDir, { recursive: true, mode: 0o700 }).then(
    () => undefined,
    (err: unknown) => (err as Error).message,
  );
  await rotateHandlerLog(config.logFile);
  const who = { crashId, pid: kernel.pid, comm: kernel.comm, signal: kernel.signal };
  const log = handlerLog(config.logFile, who);
  for (const problem of problems) await log.write('warn', problem);
  if (spoolProblem) await log.write('error', `spool folder unusable: ${spoolProblem}`);
  if (args.errors.length > 0)
    await log.write('warn', 'bad handler arguments', { errors: args.errors, args: args.raw });

  const meta: SpoolMeta = {
    version: 1,
    crashId,
    timestamp: new Date(startedAt).toISOString(),
    node: config.nodeName || hostname(),
    kernel,
    dump: {
      status: 'failed',
      reason: 'the handler did not finish',
      sizeBytes: 0,
      storedBytes: 0,
      compression: config.compression,
      limitBytes: config.maxCoreBytes,
    },
    handlerMs: 0,
    collectorVersion: collectorVersion(),
  };
  if (args.errors.length > 0) {
    meta.argsError = args.errors.join('; ');
    meta.rawArgs = args.raw;
  }
  let metaWritten = false;
  const head = new CoreHead(config.coreHeadMaxBytes);

  // The last resort: whatever happens, a meta (or at least a log line) names the crash.
  const emergency = (reason: string) => {
    if (metaWritten) return;
    metaWritten = true;
    meta.dump = { ...meta.dump, status: 'failed', reason, storedBytes: 0 };
    delete meta.dump.sha256;
    const notes = head.bytes();
    if (notes.length > 0) meta.coreHead = notes.toString('base64');
    meta.handlerMs = performance.now();
    let written = false;
    try {
      writeSpoolMetaNow(config.spoolDir, meta);
      written = true;
    } catch {
      // Reported in the log line below.
    }
    const line = {
      level: 50,
      time: Date.now(),
      name: 'podmortem-handler',
      ...who,
      msg: written ? `crash recorded as failed: ${reason}` : `crash NOT spooled: ${reason}`,
      kernel,
    };
    try {
      writeFileSync(config.logFile, JSON.stringify(line) + '\n', { flag: 'a', mode: 0o600 });
    } catch {
      try {
        writeFileSync('/dev/kmsg', `<3>podmortem-handler: ${JSON.stringify(line).slice(0, 900)}`, {
          flag: 'a',
        });
      } catch {
        // Nowhere left to write.
      }
    }
    process.exit(written ? 0 : 1);
  };
  const hard = setTimeout(
    () =>
      emergency(
        `handler deadline: not done ${config.deadlineSeconds} s + ${GRACE_MS / 1000} s after it started`,
      ),
    config.deadlineSeconds * 1000 + GRACE_MS,
  );
  hard.unref();
  process.on('uncaughtException', (err) => emergency(`handler error: ${err.message}`));
  process.on('unhandledRejection', (err) => emergency(`handler error: ${String(err)}`));

  try {
    return await spool();
  } catch (err) {
    emergency(`handler error: ${(err as Error).message}`);
    return 1;
  }

  async function spool(): Promise<number> {
    if (kernel.pid > 0) {
      try {
        meta.proc = await readProcFacts(kernel.pid, {
          ...(kernel.tid > 0 ? { tid: kernel.tid } : {}),
          ...(kernel.comm !== '' ? { comm: kernel.comm } : {}),
        });
      } catch (err) {
        meta.procError = (err as Error).message;
      }
    } else {
      meta.procError = 'no usable pid (%P) in the handler arguments: /proc not read';
    }

    let deadlineTimer: NodeJS.Timeout | undefined;
    const deadline = new Promise<void>((resolve) => {
      deadlineTimer = setTimeout(resolve, config.deadlineSeconds * 1000);
    });
    const input = keepingHead(pipeInput(process.stdin, deadline), head);
    const rateKey = rateLimitKey(meta.proc?.cgroup, meta.proc?.exe ?? (kernel.exePath || undefined));
    meta.dump = await capture({ config, input, crashId, rateKey, log });
    clearTimeout(deadlineTimer);
    // A stored core holds its notes; any other keeps them here, for the agent to read.
    const notes = meta.dump.status === 'stored' ? undefined : head.bytes();
    if (notes && notes.length > 0) meta.coreHead = notes.toString('base64');

    let modules: ModuleCaptureSummary | undefined;
    if (config.moduleCapture === 'off') {
      // Nothing recorded: the agent falls back to the mapped files of the core's notes.
    } else if (meta.proc) {
      try {
        const captured = await captureModules({
          pid: kernel.pid,
          spoolDir: config.spoolDir,
          cacheMaxBytes: config.moduleCacheMaxBytes,
          moduleMaxBytes: config.moduleMaxBytes,
          minFreeBytes: config.minFreeBytes,
          copyBytes: config.moduleCopyBytes,
          // performance.now() counts from the handler's start, as the deadline does.
          deadline: Math.min(performance.now() + config.moduleCopyMs, config.deadlineSeconds * 1000),
          // No handler lives longer than its hard deadline: a claim older than that is a dead one's.
          staleClaimMs: config.deadlineSeconds * 1000 + GRACE_MS,
        });
        meta.modules = captured.modules;
        modules = captured.summary;
      } catch (err) {
        meta.modulesError = `/proc/${kernel.pid}/maps unreadable: ${(err as Error).message}`;
      }
    } else {
      meta.modulesError = `no /proc facts, so no modules: ${meta.procError ?? 'none recorded'}`;
    }

    meta.handlerMs = Math.round(performance.now() * 10) / 10;
    try {
      await writeSpoolMeta(config.spoolDir, meta);
      metaWritten = true;
    } catch (err) {
      await log.write(
        'error',
        `crash NOT spooled: the meta could not be written (${(err as Error).message})`,
        {
          kernel,
          dump: meta.dump,
          procError: meta.procError,
        },
      );
      clearTimeout(hard);
      return 1;
    }
    clearTimeout(hard);
    const d = meta.dump;
    await log.write(d.status === 'stored' ? 'info' : 'warn', 'crash spooled', {
      status: d.status,
      ...(d.reason !== undefined ? { reason: d.reason } : {}),
      sizeBytes: d.sizeBytes,
      storedBytes: d.storedBytes,
      ...(meta.procError !== undefined ? { procError: meta.procError } : {}),
      ...(meta.argsError !== undefined ? { argsError: meta.argsError } : {}),
      ...(modules !== undefined ? { modules } : {}),
      ...(meta.modulesError !== undefined ? { modulesError: meta.modulesError } : {}),
      rateKey,
      handlerMs: meta.handlerMs,
      maxRssKb: process.resourceUsage().maxRSS,
    });
    return 0;
  }
}

if (import.meta.main) {
  const asked = askedOfHandler(process.argv.slice(2));
  // Exits explicitly: a read of the kernel's pipe abandoned at the deadline would keep Node waiting.
  (asked === undefined
    ? runHandler(process.argv.slice(2))
    : handlerUsage(asked, process.argv[1]).then((text) => {
        process.stdout.write(text);
        return 0;
      })
  ).then(
    (code) => process.exit(code),
    () => process.exit(1),
  );
}
