/**
 * `rmbert train` as a process against the real Kafka, with a tiny random model in service:
 * Feedback records in, stored on disk and committed; one `--once` round; a ModelUpdate (and a new
 * artifact) iff the gate promotes; unusable feedback dead-lettered to the feedback dead-letter topic;
 * no document text in the logs; SIGTERM in continuous mode exits 0 with the feedback stored.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { manifestSha256 } from '../../../src/cli/stage-wiring.ts';
import { buildConfig } from '../../../src/config/index.ts';
import { SHIPPED_GOLD_FILE } from '../../../src/config/trainer.ts';
import { loadArtifact, writeArtifact } from '../../../src/model/artifact.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertModel } from '../../../src/model/bert.ts';
import { SHIPPED_VOCAB_SHA256 } from '../../../src/model/tokenizer.ts';
import { codecs, type FeedbackRecord, type ModelUpdateRecord } from '../../../src/stream/codecs.ts';
import { FeedbackConsumer, TrainerCommitter, type ReceivedFeedback } from '../../../src/stream/trainer-io.ts';
import { bioLabels, MEDICAL_TYPES, readKbertTsv } from '../../../src/train/datasets.ts';
import { spansFromBio } from '../../../src/train/metrics.ts';
import { KAFKA_BROKERS } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';
import { REPO_ROOT, sharedData } from '../../helpers/paths.ts';
import { Collector, TestProducer, capturingLogger, createTopics, decodeDeadLetter, tempDir, testKafka, testNames, type TestNames } from '../stream/harness.ts';

const BIN = path.join(REPO_ROOT, 'bin/rmbert.js');
const TINY = { hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 128, typeVocabSize: 2, layerNormEps: 1e-12 };

let names: TestNames;
let kafka: Kafka;
let tmp: { dir: string; remove(): Promise<void> };
let modelDir: string;
let goldFile: string;
let feedback: FeedbackRecord[];
let feedbackDlq: string;

/** Feedback records from the medical train split: gold spans from the BIO tags, offsets in code units. */
function feedbackFromCorpus(count: number): FeedbackRecord[] {
  const sentences = readKbertTsv(sharedData('kbert-medical-ner', 'train.tsv')).sentences.slice(100, 100 + count);
  return sentences.map((s, i) => {
    const offsets = [0];
    for (const c of s.chars) offsets.push(offsets[offsets.length - 1] + c.length);
    return {
      documentId: `fb-${i}`,
      text: s.text,
      entities: spansFromBio(s.labels).map((e) => ({ start: offsets[e.start], end: offsets[e.end], text: s.text.slice(offsets[e.start], offsets[e.end]), type: e.type })),
      annotator: 'annotator-7',
      modelVersionSeen: 'rmbert-random+000000000000',
      createdAt: 1_764_547_200_000 + i,
    };
  });
}

before(async () => {
  names = testNames('trainer');
  kafka = testKafka();
  await createTopics(kafka, names, 2);
  feedbackDlq = `${names.feedback}.dlq`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: feedbackDlq, numPartitions: 1, replicationFactor: 1 }] });
  await admin.disconnect();
  tmp = await tempDir('rmbert-trainer');
  modelDir = path.join(tmp.dir, 'models');
  // The model in service: tiny, random, with knowledge injection on (the graph comes from data/kg).
  await selectBackend('cpu', () => undefined);
  const labels = bioLabels(MEDICAL_TYPES);
  const config = { vocabSize: 21128, ...TINY };
  const model = BertModel.init(config, { numLabels: labels.length, seed: 4 });
  await writeArtifact(
    path.join(modelDir, 'rmbert-random'),
    { name: 'rmbert-random', model: config, labels, vocabSha256: SHIPPED_VOCAB_SHA256, knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 96, enabled: true }, createdAt: new Date(0).toISOString() },
    await model.toWeightMap(),
    { dtype: 'F32' },
  );
  model.dispose();
  // A small frozen gold set (the shipped one's first 12 sentences) keeps evaluation short.
  goldFile = path.join(tmp.dir, 'gold.tsv');
  const lines = (await readFile(SHIPPED_GOLD_FILE, 'utf8')).split('\n');
  await writeFile(goldFile, lines.slice(0, 13).join('\n') + '\n');

  feedback = feedbackFromCorpus(8);
  const producer = await TestProducer.connect(kafka);
  const good = feedback.map((f) => ({ key: f.documentId, value: codecs().feedback.encode(f) }));
  const badSpan: FeedbackRecord = { ...feedback[0], documentId: 'fb-bad', entities: [{ start: 0, end: feedback[0].text.length + 5, text: 'x', type: 'Symptom' }] };
  await producer.raw(names.feedback, [
    ...good,
    { key: 'fb-bad', value: codecs().feedback.encode(badSpan) },
    { key: 'fb-garbage', value: Buffer.from('not avro at all') },
    // A later correction of fb-1: it replaces the first one.
    { key: 'fb-1', value: codecs().feedback.encode({ ...feedback[1], createdAt: feedback[1].createdAt + 1000 }) },
  ]);
  await producer.close();
});

after(async () => {
  await tmp?.remove();
});

function trainEnv(group: string): Record<string, string> {
  return {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    RMBERT_KAFKA_BROKERS: KAFKA_BROKERS.join(','),
    RMBERT_INPUT_TOPIC: names.input,
    RMBERT_OUTPUT_TOPIC: names.output,
    RMBERT_DLQ_TOPIC: names.deadLetter,
    RMBERT_FEEDBACK_TOPIC: names.feedback,
    RMBERT_MODEL_UPDATES_TOPIC: names.modelUpdates,
    RMBERT_GROUP_ID: group,
    RMBERT_CREATE_TOPICS: 'false',
    RMBERT_KAFKA_SESSION_TIMEOUT_MS: '10000',
    RMBERT_MODEL_DIR: modelDir,
    RMBERT_KG_FILE: path.join(REPO_ROOT, 'data/kg/Medical.spo'),
    RMBERT_TRAINER_GOLD_FILE: goldFile,
    RMBERT_TRAINER_BACKEND: 'cpu',
    RMBERT_TRAINER_MIN_EXAMPLES: '3',
    RMBERT_TRAINER_HOLDOUT_PERCENT: '25',
    RMBERT_TRAINER_MAX_STEPS: '3',
    RMBERT_TRAINER_BATCH_SIZE: '4',
    RMBERT_TRAINER_LR: '1e-4',
    RMBERT_TRAINER_GAMMA: '100',
    RMBERT_TRAINER_REPLAY_MAX: '4',
    RMBERT_TRAINER_STATE_DIR: path.join(tmp.dir, `state-${group}`),
    RMBERT_TRAINER_DLQ_TOPIC: feedbackDlq,
    RMBERT_METRICS_PORT: '0',
    RMBERT_LOG_LEVEL: 'debug',
  };
}

function spawnTrain(args: string[], env: Record<string, string>) {
  const child = spawn(process.execPath, [BIN, 'train', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const events = () =>
    stdout
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, unknown> & { msg: string; level: string });
  return { child, exited, out: () => stdout, err: () => stderr, events };
}

async function endOffsets(topic: string): Promise<Map<number, string>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((p) => [p.partition, p.high]));
  } finally {
    await admin.disconnect();
  }
}

async function committed(group: string, topic = names.feedback): Promise<Map<number, string>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    const [entry] = await admin.fetchOffsets({ groupId: group, topics: [topic] });
    return new Map(entry.partitions.map((p) => [p.partition, p.offset]));
  } finally {
    await admin.disconnect();
  }
}

function assertNoText(out: string): void {
  for (const f of feedback) {
    for (const e of f.entities.filter((x) => x.text.length >= 3)) assert.ok(!out.includes(e.text), `the logs hold gold entity text`);
    assert.ok(!out.includes(f.text.slice(0, 12)), 'the logs hold document text');
  }
}

test('--once with an impossible gate: the challenger is refused, no ModelUpdate, no artifact; feedback dead letters to their own topic, offsets committed', { timeout: 180_000 }, async () => {
  const group = uniqueName('trainer-refuse');
  const run = spawnTrain(['--once', '--gold-tolerance=-1'], trainEnv(group));
  const code = await run.exited;
  assert.equal(code, 0, `exit ${code}\n${run.err()}\n${run.out().slice(-3000)}`);
  const events = run.events();
  const stored = events.find((e) => e.msg === 'feedback stored')!;
  // 8 documents (fb-1 twice: the later wins), 2 unusable records.
  assert.equal(stored.documents, 8);
  assert.equal(stored.rejected, 2);
  assert.equal(stored.superseded, 1);
  const refused = events.find((e) => e.msg === 'challenger refused');
  assert.ok(refused, 'no "challenger refused" event');
  assert.deepEqual(refused.failed, ['gold']);
  const figures = refused.figures as { gold: { champion: number; challenger: number; sentences: number } };
  assert.equal(figures.gold.sentences, 12);
  assert.match((refused.reasons as string[])[0], /^gold: challenger F1 \d+\.\d\d < champion \d+\.\d\d \+ 100\.00 \(12 sentences\)/);
  assert.equal(events.find((e) => e.msg === 'done')?.outcome, 'refused');
  assertNoText(run.out());

  assert.deepEqual(await readdir(modelDir), ['rmbert-random']);
  assert.deepEqual([...(await endOffsets(names.modelUpdates)).values()], ['0'], 'a ModelUpdate was published');
  // Every feedback record is committed for the trainer's group.
  assert.deepEqual(await committed(group), await endOffsets(names.feedback));
  const dead = await Collector.start(kafka, feedbackDlq, decodeDeadLetter);
  try {
    const items = await dead.waitFor(2, 30_000);
    assert.equal(items.length, 2);
    assert.deepEqual(items.map((d) => d.record.errorClass).sort(), ['InvalidFeedbackError', 'SchemaError']);
    for (const d of items) assert.equal(d.record.sourceTopic, names.feedback);
    const invalid = items.find((d) => d.record.errorClass === 'InvalidFeedbackError')!;
    assert.equal(invalid.key, 'fb-bad');
    assert.equal(invalid.record.stage, 'validate');
    assert.match(invalid.record.message, /entity 1: span \[0, \d+\) is not inside the text/);
    assert.deepEqual(codecs().feedback.decode(invalid.record.original).documentId, 'fb-bad');
  } finally {
    await dead.close();
  }
});

test('--once with a lenient gate: a versioned artifact is written and one ModelUpdate announces it', { timeout: 180_000 }, async () => {
  const group = uniqueName('trainer-promote');
  const run = spawnTrain(['--once', '--gate-margin=-1', '--gold-tolerance', '1', '--type-tolerance', '1', '--surface-max-loss', '1', '--max-distance', '0'], trainEnv(group));
  const code = await run.exited;
  assert.equal(code, 0, `exit ${code}\n${run.err()}\n${run.out().slice(-3000)}`);
  const events = run.events();
  const promoted = events.find((e) => e.msg === 'challenger promoted');
  assert.ok(promoted, 'no "challenger promoted" event');
  assert.equal(promoted.version, 'rmbert-random-1.0.1');
  assertNoText(run.out());

  const location = path.join(modelDir, 'rmbert-random-1.0.1');
  assert.deepEqual((await readdir(modelDir)).sort(), ['rmbert-random', 'rmbert-random-1.0.1']);
  const artifact = await loadArtifact(location);
  assert.equal(artifact.config.training?.task, 'ner-feedback');
  assert.match(String(artifact.config.training?.parent), /^rmbert-random\+[0-9a-f]{12}$/);
  assert.equal(artifact.config.knowledge.enabled, true);

  const updates = await Collector.start(kafka, names.modelUpdates, (b): ModelUpdateRecord => codecs().modelUpdate.decode(b));
  try {
    const items = await updates.waitFor(1, 30_000);
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(updates.items.length, 1);
    const u = items[0];
    assert.equal(u.key, 'rmbert-random-1.0.1');
    assert.equal(u.record.version, 'rmbert-random-1.0.1');
    assert.equal(u.record.artifactLocation, location);
    assert.equal(u.record.sha256, await manifestSha256(location));
    assert.ok(Date.now() - u.record.createdAt < 180_000);
    assert.equal(u.record.metrics.goldSentences, 12);
    for (const k of ['f1', 'goldF1', 'goldF1Champion', 'holdoutF1', 'holdoutF1Champion']) {
      assert.ok(u.record.metrics[k] >= 0 && u.record.metrics[k] <= 1, `${k} = ${u.record.metrics[k]}`);
    }
  } finally {
    await updates.close();
  }
  assert.deepEqual(await committed(group), await endOffsets(names.feedback));
});

test('continuous mode: SIGTERM stops the trainer and exits 0; a bad configuration exits 2', { timeout: 120_000 }, async (t) => {
  const group = uniqueName('trainer-sigterm');
  const run = spawnTrain(['--min-examples', '1000', '--max-wait-minutes', '0'], trainEnv(group));
  t.after(() => {
    if (run.child.exitCode === null) run.child.kill('SIGKILL');
  });
  const startedBy = Date.now() + 90_000;
  while (!run.events().some((e) => e.msg === 'trainer started') && Date.now() < startedBy) await new Promise((r) => setTimeout(r, 200));
  assert.ok(run.events().some((e) => e.msg === 'trainer started'), run.err());
  // Wait until the records are stored and committed (no round: --min-examples 1000).
  const ends = await endOffsets(names.feedback);
  const readBy = Date.now() + 60_000;
  while (JSON.stringify([...(await committed(group))].sort()) !== JSON.stringify([...ends].sort()) && Date.now() < readBy) await new Promise((r) => setTimeout(r, 300));
  // /metrics, /healthz and /readyz on the trainer's own port.
  const listening = run.events().find((e) => e.msg === 'metrics server listening')!;
  const url = String(listening.url);
  assert.equal((await fetch(`${url}/healthz`)).status, 200);
  const ready = await fetch(`${url}/readyz`);
  assert.equal(ready.status, 200, await ready.clone().text());
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /rmbert_trainer_feedback_stored\{state="train"\} \d+/);
  assert.match(metrics, /rmbert_trainer_feedback_records_total\{outcome="rejected"\} 2/);
  assert.match(metrics, /rmbert_trainer_ready 1/);
  run.child.kill('SIGTERM');
  assert.equal(await run.exited, 0, run.err());
  const stopped = run.events().find((e) => e.msg === 'trainer stopped');
  assert.ok(stopped);
  assert.equal(stopped.read, 11);
  assert.equal(stopped.stored, 8);
  assert.equal(stopped.rounds, 0);
  // Stored before committed: the offsets are committed without a round, and the store holds the 8 documents.
  assert.deepEqual(await committed(group), ends);
  const store = JSON.parse(await readFile(path.join(tmp.dir, `state-${group}`, 'feedback-store.json'), 'utf8')) as { documents: unknown[] };
  assert.equal(store.documents.length, 8);

  const bad = spawnTrain([], { ...trainEnv('rmbert-stage'), RMBERT_TRAINER_HOLDOUT_PERCENT: '99' });
  assert.equal(await bad.exited, 2);
  assert.match(bad.err(), /the stage's consumer group/);
  assert.match(bad.err(), /trainer.holdoutPercent \(RMBERT_TRAINER_HOLDOUT_PERCENT\): 99 is outside 0..50/);
});

test('trainer I/O: transactional feedback is read to its end (aborted records and markers skipped); a retried commit does not publish twice', { timeout: 120_000 }, async () => {
  const io = testNames('trainer-io');
  await createTopics(kafka, io, 2);
  const group = uniqueName('trainer-io');
  const config = buildConfig({
    env: {},
    overrides: {
      'kafka.brokers': KAFKA_BROKERS,
      'topics.input': io.input,
      'topics.output': io.output,
      'topics.deadLetter': io.deadLetter,
      'topics.feedback': io.feedback,
      'topics.modelUpdates': io.modelUpdates,
      groupId: group,
      embedded: true,
      'knowledge.kgFile': path.join(REPO_ROOT, 'data/kg/Medical.spo'),
    },
  });
  const producer = kafka.producer({ transactionalId: uniqueName('feedback-tx'), idempotent: true, maxInFlightRequests: 1 });
  await producer.connect();
  const committedTx = await producer.transaction();
  await committedTx.send({ topic: io.feedback, messages: feedback.slice(0, 3).map((f) => ({ key: f.documentId, value: codecs().feedback.encode(f) })) });
  await committedTx.commit();
  const abortedTx = await producer.transaction();
  await abortedTx.send({ topic: io.feedback, messages: [{ key: 'fb-aborted', value: codecs().feedback.encode({ ...feedback[3], documentId: 'fb-aborted' }) }] });
  await abortedTx.abort();
  await producer.disconnect();

  const lines: string[] = [];
  const logger = capturingLogger(lines);
  const delivered: ReceivedFeedback[] = [];
  const consumer = new FeedbackConsumer(kafka, config, logger);
  try {
    await consumer.start((records) => delivered.push(...records));
    assert.equal(await consumer.caughtUp(60_000), true);
  } finally {
    await consumer.stop();
  }
  assert.deepEqual(delivered.map((d) => d.document?.documentId).sort(), ['fb-0', 'fb-1', 'fb-2']);

  const positions = new Map<number, bigint>();
  for (const d of delivered) positions.set(d.position.partition, BigInt(d.position.offset) + 1n);
  const committer = new TrainerCommitter(kafka, config, logger);
  const rejection = { position: delivered[0].position, errorClass: 'InvalidFeedbackError', message: 'entity 1: unknown type "Organ"', stage: 'validate', raw: delivered[0].raw };
  try {
    await committer.commit({ rejections: [rejection], update: null, positions });
    // A retry after a commit whose reply was lost: the offsets show it went through, so nothing is sent again.
    await committer.commit({ rejections: [rejection], update: null, positions }, { retry: true });
  } finally {
    await committer.close();
  }
  const got = await committed(group, io.feedback);
  for (const [p, next] of positions) assert.equal(got.get(p), next.toString());
  const dead = await Collector.start(kafka, io.deadLetter, decodeDeadLetter);
  try {
    await dead.waitFor(1, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(dead.items.length, 1);
    assert.equal(dead.items[0].record.sourceTopic, io.feedback);
  } finally {
    await dead.close();
  }

  // The same group again: only markers and aborted records are left after the committed offsets; it is at the end.
  const again: ReceivedFeedback[] = [];
  const second = new FeedbackConsumer(kafka, config, logger);
  try {
    await second.start((records) => again.push(...records));
    assert.equal(await second.caughtUp(60_000), true);
  } finally {
    await second.stop();
  }
  assert.deepEqual(again, []);
});

test('trainer I/O: the dead letter of a feedback record just under 1 MiB keeps a prefix and the commit goes through (it would exceed the topic limit whole)', { timeout: 120_000 }, async () => {
  const io = testNames('trainer-big');
  await createTopics(kafka, io, 1);
  const group = uniqueName('trainer-big');
  const config = buildConfig({
    env: {},
    overrides: {
      'kafka.brokers': KAFKA_BROKERS,
      'kafka.retries': 2,
      'topics.input': io.input,
      'topics.output': io.output,
      'topics.deadLetter': io.deadLetter,
      'topics.feedback': io.feedback,
      'topics.modelUpdates': io.modelUpdates,
      groupId: group,
      embedded: true,
      'knowledge.kgFile': path.join(REPO_ROOT, 'data/kg/Medical.spo'),
    },
  });
  // The raw record as the trainer read it: 1,048,000 bytes, under the broker's 1 MiB limit by itself.
  const big = Buffer.alloc(1_048_000, 0x61);
  const committer = new TrainerCommitter(kafka, config, capturingLogger([]));
  try {
    await committer.commit({
      rejections: [{ position: { partition: 0, offset: '7' }, errorClass: 'SchemaError', message: 'not a Feedback record', stage: 'decode', raw: { key: Buffer.from('fb-big'), value: big } }],
      update: null,
      positions: new Map([[0, 8n]]),
    });
  } finally {
    await committer.close();
  }
  assert.equal((await committed(group, io.feedback)).get(0), '8');
  const dead = await Collector.start(kafka, io.deadLetter, decodeDeadLetter);
  try {
    const [letter] = await dead.waitFor(1, 30_000);
    assert.equal(letter.key, 'fb-big');
    assert.equal(letter.record.originalTruncated, true);
    assert.equal(letter.record.originalLength, big.length);
    assert.deepEqual(letter.record.original, big.subarray(0, letter.record.original.length));
    assert.ok(letter.record.original.length > 0 && letter.record.original.length <= 64 * 1024);
    assert.deepEqual([letter.record.sourceTopic, letter.record.sourceOffset], [io.feedback, 7]);
  } finally {
    await dead.close();
  }
});
