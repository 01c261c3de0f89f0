/**
 * The kafkajs client built from the stage configuration (brokers, TLS, SASL, retry), with kafkajs's
 * own log lines routed into the stage's structured logger.
 */
import { readFileSync } from 'node:fs';
import { Kafka, logLevel as KafkaLogLevel, type KafkaConfig as KafkaJsConfig, type SASLOptions } from 'kafkajs';
import type { KafkaConfig } from '../config/index.ts';
import type { Logger } from '../pipeline/ports.ts';

function tlsOptions(config: KafkaConfig): KafkaJsConfig['ssl'] {
  if (!config.ssl) return false;
  if (!config.sslCaFile && !config.sslCertFile && config.sslRejectUnauthorized) return true;
  return {
    rejectUnauthorized: config.sslRejectUnauthorized,
    ...(config.sslCaFile ? { ca: [readFileSync(config.sslCaFile, 'utf8')] } : {}),
    ...(config.sslCertFile ? { cert: readFileSync(config.sslCertFile, 'utf8') } : {}),
    ...(config.sslKeyFile ? { key: readFileSync(config.sslKeyFile, 'utf8') } : {}),
  };
}

function saslOptions(config: KafkaConfig): SASLOptions | undefined {
  if (!config.sasl) return undefined;
  const { mechanism, username, password } = config.sasl;
  return { mechanism, username, password } as SASLOptions;
}

export function createKafka(config: KafkaConfig, logger: Logger, clientIdSuffix = ''): Kafka {
  const log = logger.child({ component: 'kafkajs' });
  return new Kafka({
    clientId: config.clientId + clientIdSuffix,
    brokers: [...config.brokers],
    ssl: tlsOptions(config),
    sasl: saslOptions(config),
    connectionTimeout: config.connectionTimeoutMs,
    requestTimeout: config.requestTimeoutMs,
    retry: { retries: config.retries, initialRetryTime: config.initialRetryMs, maxRetryTime: config.maxRetryMs },
    logLevel: KafkaLogLevel.WARN,
    logCreator:
      () =>
      ({ level, log: entry }) => {
        const { message, timestamp: _t, logger: _l, ...fields } = entry as { message: string; timestamp?: string; logger?: string } & Record<string, unknown>;
        // The stage bounds producer retries on purpose: a failed send aborts the whole transaction and the
        // micro-batch is sent again in a new one, so kafkajs's warning about sequence gaps does not apply.
        if (message.startsWith('Limiting retries for the idempotent producer')) return log.debug(message, fields);
        // kafkajs logs connection churn at ERROR while it retries; the stage reports real failures itself.
        if (level === KafkaLogLevel.ERROR || level === KafkaLogLevel.WARN) log.warn(message, fields);
        else if (level === KafkaLogLevel.INFO) log.info(message, fields);
        else log.debug(message, fields);
      },
  });
}
