/**
 * The local servers started by scripts/infra.sh are real: a record goes through the Kafka broker
 * (plain and transactional, read back with read_committed and read_uncommitted), and a node goes
 * through Neo4j with the configured credentials.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Kafka, Partitioners, logLevel, type Consumer, type KafkaMessage } from 'kafkajs';
import neo4j from 'neo4j-driver';
import { KAFKA_BROKERS, NEO4J_PASSWORD, NEO4J_URI, NEO4J_USER } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';

// kafkajs logs a retriable CONCURRENT_TRANSACTIONS at error level when a transaction starts while
// the broker still completes the previous one; real failures surface as rejected promises anyway.
const kafka = new Kafka({ clientId: uniqueName('infra-test'), brokers: KAFKA_BROKERS, logLevel: logLevel.NOTHING });

/** Consumes `topic` from the beginning in a fresh group until `done` says so (or times out). */
async function consumeUntil(
  topic: string,
  options: { readUncommitted: boolean },
  done: (values: string[]) => boolean,
  timeoutMs = 30_000,
): Promise<{ values: string[]; messages: KafkaMessage[] }> {
  const consumer: Consumer = kafka.consumer({
    groupId: uniqueName('infra-test-group'),
    readUncommitted: options.readUncommitted,
    maxWaitTimeInMs: 200,
  });
  const values: string[] = [];
  const messages: KafkaMessage[] = [];
  await consumer.connect();
  try {
    await consumer.subscribe({ topic, fromBeginning: true });
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out after ${timeoutMs} ms; consumed so far: ${JSON.stringify(values)}`)),
        timeoutMs,
      );
      consumer
        .run({
          eachMessage: async ({ message }) => {
            values.push(message.value?.toString('utf8') ?? '<null>');
            messages.push(message);
            if (done(values)) {
              clearTimeout(timer);
              resolve();
            }
          },
        })
        .catch((error: unknown) => {
          clearTimeout(timer);
          reject(error);
        });
    });
  } finally {
    await consumer.disconnect();
  }
  return { values, messages };
}

describe('local Kafka (scripts/infra.sh)', () => {
  const admin = kafka.admin();
  const topics: string[] = [];

  before(async () => {
    await admin.connect();
  });

  after(async () => {
    if (topics.length > 0) await admin.deleteTopics({ topics }).catch(() => undefined);
    await admin.disconnect();
  });

  async function createTopic(partitions = 1): Promise<string> {
    const topic = uniqueName('infra-test');
    const created = await admin.createTopics({
      topics: [{ topic, numPartitions: partitions, replicationFactor: 1 }],
      waitForLeaders: true,
    });
    assert.equal(created, true, `topic ${topic} was not created`);
    topics.push(topic);
    return topic;
  }

  test('a record produced to a new topic is consumed back with its key, value and header', { timeout: 60_000 }, async () => {
    const topic = await createTopic(3);
    const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner });
    await producer.connect();
    try {
      const [sent] = await producer.send({
        topic,
        acks: -1,
        messages: [{ key: 'doc-1', value: 'hello kafka', headers: { origin: 'infra-test' } }],
      });
      assert.equal(sent.errorCode, 0);
    } finally {
      await producer.disconnect();
    }

    const { values, messages } = await consumeUntil(topic, { readUncommitted: false }, (v) => v.length >= 1);
    assert.deepEqual(values, ['hello kafka']);
    assert.equal(messages[0].key?.toString(), 'doc-1');
    assert.equal(messages[0].headers?.origin?.toString(), 'infra-test');

    const offsets = await admin.fetchTopicOffsets(topic);
    const total = offsets.reduce((sum, p) => sum + Number(p.high) - Number(p.low), 0);
    assert.equal(total, 1, 'exactly one record on the topic');
  });

  test('transactions: read_committed sees committed records only, read_uncommitted sees the aborted one too', { timeout: 90_000 }, async () => {
    const topic = await createTopic(1);
    const producer = kafka.producer({
      transactionalId: uniqueName('infra-test-tx'),
      idempotent: true,
      maxInFlightRequests: 1,
      createPartitioner: Partitioners.DefaultPartitioner,
    });
    await producer.connect();
    try {
      for (const [value, outcome] of [
        ['committed-1', 'commit'],
        ['aborted-1', 'abort'],
        ['committed-2', 'commit'],
      ] as const) {
        const transaction = await producer.transaction();
        await transaction.send({ topic, messages: [{ key: value, value }] });
        if (outcome === 'commit') await transaction.commit();
        else await transaction.abort();
      }
    } finally {
      await producer.disconnect();
    }

    const committed = await consumeUntil(topic, { readUncommitted: false }, (v) => v.includes('committed-2'));
    assert.deepEqual(committed.values, ['committed-1', 'committed-2']);

    const uncommitted = await consumeUntil(topic, { readUncommitted: true }, (v) => v.includes('committed-2'));
    assert.deepEqual(uncommitted.values, ['committed-1', 'aborted-1', 'committed-2']);
  });
});

describe('local Neo4j (scripts/infra.sh)', () => {
  const driver = neo4j.driver(NEO4J_URI, neo4j.auth.basic(NEO4J_USER, NEO4J_PASSWORD));
  // Labels cannot be parameters; the unique name is made of [A-Za-z0-9_] only.
  const label = `InfraTest_${uniqueName('n').replace(/[^A-Za-z0-9]/g, '_')}`;

  after(async () => {
    await driver.executeQuery(`MATCH (n:${label}) DETACH DELETE n`).catch(() => undefined);
    await driver.close();
  });

  test('a node written with the configured credentials is read back', { timeout: 60_000 }, async () => {
    await driver.verifyAuthentication();
    const written = await driver.executeQuery(
      `CREATE (n:${label} {name: $name, weight: $weight}) RETURN elementId(n) AS id`,
      { name: '新冠肺炎', weight: 0.25 },
    );
    const id = written.records[0].get('id') as string;
    assert.ok(id.length > 0);

    const read = await driver.executeQuery(
      `MATCH (n:${label}) RETURN n.name AS name, n.weight AS weight, elementId(n) AS id`,
      {},
      { routing: neo4j.routing.READ },
    );
    assert.equal(read.records.length, 1);
    assert.equal(read.records[0].get('name'), '新冠肺炎');
    assert.equal(read.records[0].get('weight'), 0.25);
    assert.equal(read.records[0].get('id'), id);
  });

  test('a wrong password is refused (auth is really on)', { timeout: 30_000 }, async () => {
    const intruder = neo4j.driver(NEO4J_URI, neo4j.auth.basic(NEO4J_USER, `${NEO4J_PASSWORD}-wrong`));
    try {
      await assert.rejects(intruder.verifyConnectivity(), (error: { code?: string }) => {
        assert.equal(error.code, 'Neo.ClientError.Security.Unauthorized');
        return true;
      });
    } finally {
      await intruder.close();
    }
  });
});
