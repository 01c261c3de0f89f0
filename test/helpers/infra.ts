/**
 * Where the real servers started by scripts/infra.sh listen (loopback, non-default ports).
 * scripts/test.sh exports these; the defaults match scripts/infra.sh.
 */
export const KAFKA_BROKERS = (process.env.RMBERT_TEST_KAFKA_BROKERS ?? '127.0.0.1:19092').split(',');
export const NEO4J_URI = process.env.RMBERT_TEST_NEO4J_URI ?? 'bolt://127.0.0.1:17687';
export const NEO4J_USER = process.env.RMBERT_TEST_NEO4J_USER ?? 'neo4j';
export const NEO4J_PASSWORD = process.env.RMBERT_TEST_NEO4J_PASSWORD ?? 'rmbert-local';
