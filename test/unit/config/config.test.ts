import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError } from '../../../src/errors/index.ts';
import { SETTINGS, buildConfig, configFlagOptions, configHelp, describeConfig, flagValues } from '../../../src/config/index.ts';

const base = { RMBERT_NEO4J_PASSWORD: 'secret' };

test('defaults give the documented topic names, port and group', () => {
  const c = buildConfig({ env: base, hostname: 'h', pid: 7 });
  assert.deepEqual(c.topics, {
    input: 'emr.documents',
    output: 'emr.entities',
    deadLetter: 'emr.documents.dlq',
    feedback: 'emr.feedback',
    modelUpdates: 'emr.model-updates',
    heavy: 'emr.documents.heavy',
  });
  assert.equal(c.metrics.port, 9464);
  assert.equal(c.groupId, 'rmbert-stage');
  assert.equal(c.model.engine, 'auto');
  assert.equal(c.instanceId, 'h-7');
  assert.deepEqual(c.kafka.brokers, ['127.0.0.1:19092']);
  assert.equal(c.kafka.sasl, null);
});

test('environment, then flags, then overrides; the result is deeply frozen', () => {
  const c = buildConfig({
    env: { ...base, RMBERT_KAFKA_BROKERS: 'a:1, b:2', RMBERT_BATCH_MAX_RECORDS: '10', RMBERT_ENGINE: 'onnx', RMBERT_METRICS_PORT: '1234' },
    flags: { 'batch-max-records': '20', embedded: false },
    overrides: { 'metrics.port': 0 },
  });
  assert.deepEqual(c.kafka.brokers, ['a:1', 'b:2']);
  assert.equal(c.batch.maxRecords, 20);
  assert.equal(c.model.engine, 'onnx');
  assert.equal(c.metrics.port, 0);
  assert.ok(Object.isFrozen(c) && Object.isFrozen(c.kafka) && Object.isFrozen(c.kafka.brokers) && Object.isFrozen(c.batch));
  assert.throws(() => {
    (c.batch as { maxRecords: number }).maxRecords = 1;
  }, TypeError);
});

test('a bad configuration fails with every problem listed', () => {
  let error: unknown;
  try {
    buildConfig({
      env: {
        RMBERT_KAFKA_BROKERS: 'nohost',
        RMBERT_BATCH_MAX_RECORDS: 'many',
        RMBERT_METRICS_PORT: '70000',
        RMBERT_ENGINE: 'gpu',
        RMBERT_OUTPUT_TOPIC: 'emr.documents',
        RMBERT_KAFKA_SASL_MECHANISM: 'plain',
        RMBERT_EMBEDDED: 'maybe',
        RMBERT_KAFKA_SSL_CA_FILE: '/nonexistent/ca.pem',
        RMBERT_NEO4J_PASSWORD: '',
      },
      overrides: { 'no.such': 1 },
    });
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError);
  const text = error.problems.join('\n');
  for (const expected of [
    'no.such: unknown setting',
    'kafka.brokers: "nohost" is not host:port',
    'batch.maxRecords (RMBERT_BATCH_MAX_RECORDS): "many" is not an integer',
    'metrics.port (RMBERT_METRICS_PORT): 70000 is outside 0..65535',
    'model.engine (RMBERT_ENGINE): "gpu" is not one of auto, onnx, tfjs',
    'topics.output: "emr.documents" is also topics.input',
    'kafka.saslUsername: required',
    'kafka.saslPassword: required',
    'embedded (RMBERT_EMBEDDED): "maybe" is not a boolean',
    'kafka.sslCaFile: set, but kafka.ssl is false',
    'kafka.sslCaFile: file /nonexistent/ca.pem does not exist',
    'neo4j.password: required unless embedded mode is on',
  ]) {
    assert.ok(text.includes(expected), `missing problem: ${expected}\n--- got:\n${text}`);
  }
  assert.ok(error.problems.length >= 12);
});

test('SASL and TLS settings build the Kafka security options; secrets are masked in the description', () => {
  const c = buildConfig({
    env: { ...base, RMBERT_KAFKA_SSL: 'true', RMBERT_KAFKA_SASL_MECHANISM: 'scram-sha-512', RMBERT_KAFKA_SASL_USERNAME: 'u', RMBERT_KAFKA_SASL_PASSWORD: 'p' },
  });
  assert.equal(c.kafka.ssl, true);
  assert.deepEqual(c.kafka.sasl, { mechanism: 'scram-sha-512', username: 'u', password: 'p' });
  const described = JSON.stringify(describeConfig(c));
  assert.ok(!described.includes('"p"') && !described.includes('secret'));
});

test('embedded mode needs no Neo4j password but a graph file that exists', () => {
  assert.throws(() => buildConfig({ env: { RMBERT_EMBEDDED: 'true', RMBERT_KG_FILE: '/nope.spo' } }), /knowledge.kgFile: \/nope.spo does not exist/);
  const c = buildConfig({ env: { RMBERT_EMBEDDED: '1', RMBERT_KG_FILE: 'package.json' } });
  assert.equal(c.embedded, true);
});

test('every setting has a flag for parseArgs and a line in the help', () => {
  const options = configFlagOptions();
  const help = configHelp();
  for (const s of SETTINGS) {
    assert.ok(options[s.flag], s.flag);
    assert.ok(help.includes(`--${s.flag}`) && help.includes(s.env), s.key);
  }
  assert.equal(new Set(SETTINGS.map((s) => s.env)).size, SETTINGS.length, 'environment names are unique');
});

test('--no-<flag> turns off a boolean that defaults to true', () => {
  assert.ok(configFlagOptions()['no-create-topics']);
  const c = buildConfig({ env: base, flags: flagValues({ 'no-create-topics': true, 'batch-max-wait-ms': '5', help: true }) });
  assert.equal(c.createTopics, false);
  assert.equal(c.batch.maxWaitMs, 5);
});

test('command defaults sit below the environment and above the built-in defaults', () => {
  assert.equal(buildConfig({ env: {}, defaults: { 'neo4j.password': 'local' } }).neo4j.password, 'local');
  assert.equal(buildConfig({ env: { RMBERT_NEO4J_PASSWORD: 'prod' }, defaults: { 'neo4j.password': 'local' } }).neo4j.password, 'prod');
  assert.throws(() => buildConfig({ env: base, defaults: { nope: 'x' } }), /nope: unknown setting/);
});

test('group liveness: session timeout, heartbeat and rebalance timeout, with the heartbeat at most a third of the session', () => {
  const c = buildConfig({ env: base });
  assert.deepEqual([c.kafka.sessionTimeoutMs, c.kafka.heartbeatIntervalMs, c.kafka.rebalanceTimeoutMs], [10_000, 1000, 60_000]);
  const tuned = buildConfig({ env: { ...base, RMBERT_KAFKA_SESSION_TIMEOUT_MS: '6000', RMBERT_KAFKA_HEARTBEAT_INTERVAL_MS: '500', RMBERT_KAFKA_REBALANCE_TIMEOUT_MS: '20000' } });
  assert.deepEqual([tuned.kafka.sessionTimeoutMs, tuned.kafka.heartbeatIntervalMs, tuned.kafka.rebalanceTimeoutMs], [6000, 500, 20_000]);
  assert.throws(() => buildConfig({ env: { ...base, RMBERT_KAFKA_SESSION_TIMEOUT_MS: '6000', RMBERT_KAFKA_HEARTBEAT_INTERVAL_MS: '2500' } }), /kafka.heartbeatIntervalMs: must be at most a third of kafka.sessionTimeoutMs/);
  assert.throws(() => buildConfig({ env: { ...base, RMBERT_KAFKA_SESSION_TIMEOUT_MS: '5000' } }), /kafka.sessionTimeoutMs \(RMBERT_KAFKA_SESSION_TIMEOUT_MS\): 5000 is outside 6000/);
});

test('micro-batch cost and the heavy-document lane: defaults, 0 turns the lane off, the heavy topic follows the input topic', () => {
  const c = buildConfig({ env: base });
  assert.deepEqual([c.batch.maxCost, c.heavy.minCost, c.topics.heavy], [20_000, 20_000, 'emr.documents.heavy']);
  const off = buildConfig({ env: { ...base, RMBERT_HEAVY_DOC_COST: '0', RMBERT_INPUT_TOPIC: 'in', RMBERT_BATCH_MAX_COST: '5000' } });
  assert.deepEqual([off.batch.maxCost, off.heavy.minCost, off.topics.heavy], [5000, 0, 'in.heavy']);
  assert.equal(buildConfig({ env: { ...base, RMBERT_HEAVY_TOPIC: 'big-ones' } }).topics.heavy, 'big-ones');
  assert.throws(() => buildConfig({ env: { ...base, RMBERT_HEAVY_TOPIC: 'emr.entities' } }), /topics.heavy: "emr.entities" is also topics.output/);
});
