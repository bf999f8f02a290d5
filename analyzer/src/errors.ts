import { defineErrors, PodmortemError, registryOptions } from '@podmortem/contract/runtime';

// The analyzer's error codes. A crash that cannot be analysed is not an error of the service: it
// becomes a `failed` or `skipped` analysis with its reason. These are what stops a crash from
// being analysed now and is retried: the store or Kafka being away.

export const ANALYZER_ERRORS = defineErrors({
  PM_ERR_STORE_UNAVAILABLE: { retriable: true, message: 'the store could not be read' },
  PM_ERR_PUBLISH: { retriable: true, message: 'the analysis topic did not acknowledge the record' },
});

export type AnalyzerErrorCode = keyof typeof ANALYZER_ERRORS;

export class AnalyzerError extends PodmortemError {
  declare readonly code: AnalyzerErrorCode;

  constructor(code: AnalyzerErrorCode, message: string, cause?: unknown) {
    super(code, message, registryOptions(ANALYZER_ERRORS[code], cause));
    this.name = 'AnalyzerError';
  }
}
