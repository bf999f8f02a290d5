import type { Logger } from '@podmortem/contract/runtime';
import { Kafka, logLevel, type LogEntry, type logCreator } from 'kafkajs';

// The Kafka client of the indexer, logging through pino as JSON like the rest of the service.

function pinoLogCreator(logger: Logger): logCreator {
  return () =>
    ({ namespace, level, log }: LogEntry) => {
      const { message, ...extra } = log;
      // kafkajs repeats its own timestamp and logger name; pino has both.
      const fields: Record<string, unknown> = { kafkajs: namespace, ...extra };
      delete fields.timestamp;
      delete fields.logger;
      if (level === logLevel.ERROR) logger.error(fields, message);
      else if (level === logLevel.WARN) logger.warn(fields, message);
      else if (level === logLevel.INFO) logger.info(fields, message);
      else logger.debug(fields, message);
    };
}

export function createKafka(params: { brokers: string[]; clientId: string; logger: Logger }): Kafka {
  return new Kafka({
    clientId: params.clientId,
    brokers: params.brokers,
    logLevel: logLevel.WARN,
    logCreator: pinoLogCreator(params.logger.child({ component: 'kafkajs' })),
  });
}
