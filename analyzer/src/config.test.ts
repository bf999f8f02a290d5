import t from 'tap';
import { ANALYSIS_REQUEST_TOPIC, ANALYSIS_TOPIC, CRASH_TOPIC } from '@podmortem/contract';
import { ConfigError } from '@podmortem/contract/runtime';
import { loadAnalyzerConfig } from './config.ts';

t.test('defaults: the crash topic in, the analysis topic out, group podmortem-analyzer', async (t) => {
  const c = loadAnalyzerConfig({});
  t.match(c, {
    topic: CRASH_TOPIC,
    analysisTopic: ANALYSIS_TOPIC,
    groupId: 'podmortem-analyzer',
    maxTempBytes: 4 * 1024 ** 3,
    unwinderCommand: 'eu-stack',
    unwindDeadlineMs: 30_000,
    concurrency: 1,
  });
});

t.test('variables are read and checked, naming the variable', async (t) => {
  const c = loadAnalyzerConfig({
    PODMORTEM_ANALYZER_KAFKA_BROKERS: 'a:1, b:2',
    PODMORTEM_ANALYZER_MAX_TEMP_BYTES: '2097152',
    PODMORTEM_ANALYZER_UNWINDER_COMMAND: '/opt/eu-stack',
  });
  t.same(c.kafkaBrokers, ['a:1', 'b:2']);
  t.equal(c.maxTempBytes, 2097152);
  t.equal(c.unwinderCommand, '/opt/eu-stack');
  t.throws(() => loadAnalyzerConfig({ PODMORTEM_ANALYZER_MAX_TEMP_BYTES: 'lots' }), {
    name: 'ConfigError',
    key: 'PODMORTEM_ANALYZER_MAX_TEMP_BYTES',
  });
  t.throws(() => loadAnalyzerConfig({ PODMORTEM_ANALYZER_MAX_TEMP_BYTES: '10' }), ConfigError, 'below 1 MiB');
  t.throws(() => loadAnalyzerConfig({ PODMORTEM_ANALYZER_ANALYSIS_TOPIC: CRASH_TOPIC }), {
    name: 'ConfigError',
    key: 'PODMORTEM_ANALYZER_ANALYSIS_TOPIC',
  });
  t.throws(
    () =>
      loadAnalyzerConfig({
        PODMORTEM_ANALYZER_SESSION_TIMEOUT_MS: '6000',
        PODMORTEM_ANALYZER_HEARTBEAT_INTERVAL_MS: '3000',
      }),
    { name: 'ConfigError', key: 'PODMORTEM_ANALYZER_HEARTBEAT_INTERVAL_MS' },
  );
});

t.test('the re-analysis request topic: its default, and never the analysis or crash topic', async (t) => {
  t.equal(loadAnalyzerConfig({}).requestTopic, ANALYSIS_REQUEST_TOPIC);
  for (const topic of [ANALYSIS_TOPIC, CRASH_TOPIC]) {
    t.throws(() => loadAnalyzerConfig({ PODMORTEM_ANALYZER_REQUEST_TOPIC: topic }), {
      name: 'ConfigError',
      key: 'PODMORTEM_ANALYZER_REQUEST_TOPIC',
      message: /must differ from the analysis topic and the crash topic/,
    });
  }
});
