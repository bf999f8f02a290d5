import { decodeCrashMessage, type CrashEvent } from '@podmortem/contract';
import type { Store } from '@podmortem/contract/store';
import type { Logger } from '@podmortem/contract/runtime';
import { analysisOf, threadsOf, type Analysis } from './analysis.ts';
import { crashFiles, removeCrashFiles } from './crash-files.ts';
import { keepDebuginfo, type DebuginfodParams } from './debuginfod.ts';
import type { AnalyzerTelemetry } from './telemetry.ts';
import { pcFrame } from './pc-frame.ts';
import { UNWINDER_DEFAULTS, unwindCore, type UnwinderParams } from './unwinder.ts';

// One crash record in, its analysis out: the dump and the captured modules from the store into a
// temporary folder (always removed), the unwinder under its limits, and a status that says how
// much to trust the result. Every way a crash cannot be analysed is an analysis of its own,
// `failed` or `skipped` with the reason; only the store being unreadable now (retried by the
// caller) and a cancellation (the shutdown) throw.

export interface AnalyzeParams {
  store: Store;
  telemetry: Pick<AnalyzerTelemetry, 'unwindDuration'>;
  /** The analyzer's version, recorded in each analysis. */
  version: string;
  workDir: string;
  maxTempBytes: number;
  unwinder: Omit<UnwinderParams, 'signal' | 'debuginfod'>;
  /** debuginfod servers for the unwinder; what they served is kept in the store (debuginfod.ts). */
  debuginfod?: DebuginfodParams & { logger: Pick<Logger, 'info' | 'warn'> };
  signal: AbortSignal;
  /** The time of the analysis; default now. */
  now?: () => Date;
}

export interface PublishedAnalysis {
  kind: 'analysis';
  event: CrashEvent;
  analysis: Analysis;
  /** For failed and skipped analyses: the reason's code, a low-cardinality label. */
  failure?: string;
}

export type RecordAnalysis = PublishedAnalysis | { kind: 'invalid'; errors: string[] };

/** The contract's cap on `analysis.reason`. */
const MAX_REASON = 1024;
const reasonText = (code: string, message: string): string => `${code}: ${message}`.slice(0, MAX_REASON);

export async function analyzeRecord(value: Buffer | null, params: AnalyzeParams): Promise<RecordAnalysis> {
  const decoded = decodeCrashMessage(value);
  if (!decoded.ok) return { kind: 'invalid', errors: decoded.errors };
  return { kind: 'analysis', event: decoded.value, ...(await analyzeCrash(decoded.value, params)) };
}

export async function analyzeCrash(
  event: CrashEvent,
  params: AnalyzeParams,
): Promise<Pick<PublishedAnalysis, 'analysis' | 'failure'>> {
  const stamp = { analyzed_at: (params.now?.() ?? new Date()).toISOString(), analyzer: params.version };
  const unanalysed = (status: 'failed' | 'skipped', code: string, message: string) => ({
    analysis: { ...stamp, status, reason: reasonText(code, message) },
    failure: code,
  });
  const signal = event.signal.name;

  if (event.dump.status !== 'stored' && event.dump.status !== 'truncated') {
    // The crashing thread's pc and the module map are all there is: the top frame, no signature.
    const why = `no dump (${event.dump.status}${event.dump.reason ? `: ${event.dump.reason}` : ''})`;
    const top = await pcFrame(event, {
      store: params.store,
      workDir: params.workDir,
      maxBytes: params.maxTempBytes,
      deadlineMs: params.unwinder.deadlineMs ?? UNWINDER_DEFAULTS.deadlineMs,
      addressSpaceBytes: params.unwinder.addressSpaceBytes ?? UNWINDER_DEFAULTS.addressSpaceBytes,
      ...(params.debuginfod ? { debuginfod: params.debuginfod } : {}),
      signal: params.signal,
    });
    if (!top) return unanalysed('skipped', 'no-dump', `${why}; the crash's notes gave no pc`);
    const found = analysisOf(signal, [
      { tid: event.process.tid ?? event.process.pid, crashing: true, truncated: false, frames: [top.frame] },
    ]);
    const detail = top.problem ? `; ${top.problem}` : '';
    return {
      analysis: {
        ...stamp,
        ...(found ? { frames: found.frames, title: found.title } : {}),
        status: 'partial',
        reason: reasonText('no-dump', `${why}: the top frame from the pc and the module map only${detail}`),
      },
    };
  }

  const files = await crashFiles(event, {
    store: params.store,
    workDir: params.workDir,
    maxBytes: params.maxTempBytes,
    signal: params.signal,
  });
  if (!files.ok) return unanalysed(files.status, files.reason, files.message);
  try {
    const result = await unwindCore(
      { core: files.core, executable: files.executable, debuginfoDirs: files.debuginfoDirs },
      {
        ...params.unwinder,
        ...(params.debuginfod ? { debuginfod: params.debuginfod } : {}),
        signal: params.signal,
      },
    );
    const buildIds = (event.analysis?.modules ?? []).flatMap((m) => (m.build_id ? [m.build_id] : []));
    if (params.debuginfod && !params.signal.aborted)
      await keepDebuginfo(params.store, params.debuginfod, buildIds, params.debuginfod.logger);
    params.telemetry.unwindDuration.observe(
      { result: result.ok ? 'ok' : result.reason },
      result.durationMs / 1000,
    );
    if (!result.ok) {
      if (result.reason === 'aborted') throw params.signal.reason;
      return unanalysed('failed', result.reason, result.message);
    }
    const found = analysisOf(signal, result.threads);
    if (!found) return unanalysed('failed', 'no-threads', 'no crashing thread in the unwind');
    const partly = [
      ...(event.dump.status === 'truncated' ? ['the dump is truncated'] : []),
      ...(files.coreCut ? ['the compressed dump ends early'] : []),
      ...(result.outputTruncated ? ["the unwinder's output was cut at its byte limit"] : []),
    ];
    return {
      analysis: {
        ...stamp,
        ...found,
        threads: threadsOf(result.threads),
        status: partly.length > 0 ? 'partial' : 'ok',
        ...(partly.length > 0 ? { reason: reasonText('partial', partly.join('; ')) } : {}),
      },
    };
  } finally {
    await removeCrashFiles(files.dir);
  }
}
