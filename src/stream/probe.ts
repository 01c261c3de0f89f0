/**
 * One quick look at the brokers before a command starts its clients. kafkajs's own retry policy is
 * sized for an outage while running (about 45 s with the defaults); at start, an address that does
 * not answer is far more often a wrong address or servers not started, and the person at the
 * terminal should hear so within seconds.
 */
import type { KafkaConfig } from '../config/index.ts';
import { ConfigError, TransportError } from '../errors/index.ts';
import type { Logger } from '../pipeline/ports.ts';
import { createKafka } from './kafka.ts';

/** Attempts of the probe: a broker that is restarting gets one more chance, a wrong address costs seconds. */
const PROBE_RETRIES = 1;

/**
 * Connects to the brokers and asks for the cluster's description. Throws TransportError (not retriable)
 * when no broker answers, ConfigError when the brokers reject the SASL credentials.
 */
export async function probeBrokers(config: KafkaConfig, logger: Logger): Promise<{ brokers: number }> {
  const kafka = createKafka({ ...config, retries: PROBE_RETRIES, maxRetryMs: Math.min(config.maxRetryMs, 1000) }, logger, '-probe');
  const admin = kafka.admin();
  const where = config.brokers.join(',');
  try {
    await admin.connect();
    const cluster = await admin.describeCluster();
    return { brokers: cluster.brokers.length };
  } catch (error) {
    const name = error instanceof Error ? error.name : '';
    const message = error instanceof Error ? error.message : String(error);
    if (name === 'KafkaJSSASLAuthenticationError') {
      throw new ConfigError([`kafka: the brokers at ${where} rejected the SASL credentials (${message}); check RMBERT_KAFKA_SASL_USERNAME and RMBERT_KAFKA_SASL_PASSWORD`]);
    }
    throw new TransportError(
      `cannot reach Kafka at ${where} (${message}). Start the local servers (bash scripts/infra.sh up) or set RMBERT_KAFKA_BROKERS (--kafka-brokers).`,
      error,
      false,
    );
  } finally {
    await admin.disconnect().catch(() => undefined);
  }
}
