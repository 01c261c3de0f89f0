/**
 * Issue 16's "done when", on the real Kafka with the shipped model and the trainer's default
 * settings, as `rmbert train --once` processes (each run is a restart):
 *   1. 40 documents labelling five symptoms the model misses as BodyPart: quarantined with a reason,
 *      the round refused, nothing promoted;
 *   2. 40 correct documents of the same symptoms: a round refused (an impossible gold tolerance);
 *      the feedback and its holdout stay in the store;
 *   3. 5 more: the next round trains on all 45 (the refused ones included), promotes a model that
 *      fixes most of the error on held-out sentences phrased differently, with the gold set within
 *      the default tolerance, and announces it on the model-updates topic.
 * The sentences are this project's own (benchmarks/learning-loop-data.ts), never the test split.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { cp, readFile, readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { CONTEXT_SYMPTOMS, makeSentences, toNer, type Labelled } from '../../../benchmarks/learning-loop-data.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import { codecs, type FeedbackRecord, type ModelUpdateRecord } from '../../../src/stream/codecs.ts';
import { createInjector, evaluateModel, loadNerModel, prepareExamples } from '../../../src/train/evaluate.ts';
import { spansFromBio } from '../../../src/train/metrics.ts';
import { KAFKA_BROKERS } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { Collector, TestProducer, createTopics, tempDir, testKafka, testNames, type TestNames } from '../stream/harness.ts';

const BIN = path.join(REPO_ROOT, 'bin/rmbert.js');
const KG = path.join(REPO_ROOT, 'data/kg/Medical.spo');
/** The five the shipped model misses most in these templates (benchmarks/learning-loop.ts --phase probe: 100% missed). */
const TARGETS = ['乏力', '失眠', '便秘', '尿频', '食欲不振'];

let names: TestNames;
let kafka: Kafka;
let tmp: { dir: string; remove(): Promise<void> };
let modelDir: string;
let stateDir: string;
let feedbackDlq: string;
const group = uniqueName('learning');

before(async () => {
  names = testNames('learning');
  kafka = testKafka();
  await createTopics(kafka, names, 1);
  feedbackDlq = `${names.feedback}.dlq`;
  const admin = kafka.admin();
  await admin.connect();
  await admin.createTopics({ waitForLeaders: true, topics: [{ topic: feedbackDlq, numPartitions: 1, replicationFactor: 1 }] });
  await admin.disconnect();
  tmp = await tempDir('rmbert-learning');
  modelDir = path.join(tmp.dir, 'models');
  stateDir = path.join(tmp.dir, 'state');
  await cp(path.join(REPO_ROOT, 'models/medical'), path.join(modelDir, 'rmbert-medical-kg-crf'), { recursive: true });
});

after(async () => {
  await tmp?.remove();
});

function records(set: Labelled[], prefix: string, createdAt: number): FeedbackRecord[] {
  return set.map((s, i) => ({
    documentId: `${prefix}-${String(i).padStart(3, '0')}`,
    text: s.text,
    entities: s.entities,
    annotator: 'clinician-3',
    modelVersionSeen: 'rmbert-medical-kg-crf',
    createdAt: createdAt + i,
  }));
}

async function produce(list: FeedbackRecord[]): Promise<void> {
  const producer = await TestProducer.connect(kafka);
  await producer.raw(
    names.feedback,
    list.map((f) => ({ key: f.documentId, value: codecs().feedback.encode(f) })),
  );
  await producer.close();
}

async function train(args: string[]): Promise<{ code: number | null; events: (Record<string, unknown> & { msg: string })[]; out: string; err: string }> {
  const env = {
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
    RMBERT_MODEL_DIR: modelDir,
    RMBERT_KG_FILE: KG,
    RMBERT_TRAINER_STATE_DIR: stateDir,
    RMBERT_TRAINER_DLQ_TOPIC: feedbackDlq,
    RMBERT_METRICS_PORT: '0',
  };
  const child = spawn(process.execPath, [BIN, 'train', '--once', ...args], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const events = out
    .split('\n')
    .filter((l) => l.trim())
    .map((l) => JSON.parse(l) as Record<string, unknown> & { msg: string });
  return { code, events, out, err };
}

interface StoreFile {
  documents: { documentId: string; split: string; status: string; rounds: number; promotedIn?: string }[];
}

async function readStore(): Promise<StoreFile> {
  return JSON.parse(await readFile(path.join(stateDir, 'feedback-store.json'), 'utf8')) as StoreFile;
}

/** Share of target mentions the model at `dir` does not find exactly (span and type). */
async function targetError(dir: string, set: Labelled[]): Promise<number> {
  await selectBackend('auto', () => undefined);
  const tokenizer = await BertTokenizer.load();
  const loaded = await loadNerModel(dir, tokenizer);
  try {
    const { injector } = await createInjector(tokenizer, { ...loaded.knowledge, kgFile: KG });
    const prepared = await prepareExamples(set.map(toNer), injector, loaded.labels);
    const { predicted } = await evaluateModel(loaded.model, loaded.labels, prepared, loaded.types, { padId: tokenizer.padId, crf: loaded.crf });
    let missed = 0;
    set.forEach((s, i) => {
      const t = s.entities[s.target];
      if (!spansFromBio(predicted[i]).some((e) => e.start === t.start && e.end === t.end && e.type === t.type)) missed++;
    });
    return missed / set.length;
  } finally {
    loaded.model.dispose();
  }
}

const good = makeSentences('feedback', TARGETS, 45);
const heldOut = makeSentences('heldout', TARGETS, 20);

test('wrong labels, a refused round, a restart, then a round that learns: the feedback loop on the real Kafka with the shipped model', { timeout: 1_500_000 }, async () => {
  // Sanity of the data: the held-out sentences are phrased unlike the feedback, and every context symptom is labelled.
  assert.equal(new Set(heldOut.map((s) => s.text)).size, 20);
  for (const s of heldOut) assert.ok(!good.some((g) => g.text === s.text));
  for (const s of good) assert.ok(CONTEXT_SYMPTOMS.includes(s.entities[1 - s.target].text));

  // 1. Poison: the five symptoms labelled BodyPart. Quarantined on arrival, the round refused with a reason.
  const poison = good.slice(0, 40).map((s) => ({ ...s, entities: s.entities.map((e, i) => (i === s.target ? { ...e, type: 'BodyPart' } : e)) }));
  await produce(records(poison, 'p', 1_765_000_000_000));
  const first = await train([]);
  assert.equal(first.code, 0, `${first.err}\n${first.out.slice(-3000)}`);
  const refusedPoison = first.events.find((e) => e.msg === 'challenger refused');
  assert.ok(refusedPoison, first.out.slice(-3000));
  assert.deepEqual(refusedPoison.failed, ['label-check']);
  assert.match((refusedPoison.reasons as string[])[0], /^label-check: 40 new documents quarantined/);
  assert.deepEqual(await readdir(modelDir), ['rmbert-medical-kg-crf']);
  let store = await readStore();
  assert.equal(store.documents.filter((d) => d.status === 'quarantined').length, 40);
  // The logs count quarantines; they never quote the surfaces.
  for (const t of TARGETS) assert.ok(!first.out.includes(t));

  // 2. The correct labels; a round refused by an impossible gold tolerance (one step: the refusal is the point).
  await produce(records(good.slice(0, 40), 'g', 1_765_000_100_000));
  const second = await train(['--gold-tolerance=-1', '--max-steps', '1']);
  assert.equal(second.code, 0, second.err);
  const refused = second.events.find((e) => e.msg === 'challenger refused');
  assert.ok(refused, second.out.slice(-3000));
  assert.deepEqual(refused.failed, ['gold']);
  store = await readStore();
  const holdoutAfterSecond = store.documents.filter((d) => d.split === 'holdout').map((d) => d.documentId);
  assert.ok(holdoutAfterSecond.length >= 5, `holdout ${holdoutAfterSecond.length}`);
  // Stratified: every target term has held-out documents.
  assert.equal(new Set(holdoutAfterSecond.filter((id) => id.startsWith('g-')).map((id) => good[Number(id.slice(2))].entities[good[Number(id.slice(2))].target].text)).size, TARGETS.length);

  // 3. A restart with five more documents: the round trains on all the correct ones, the refused included.
  await produce(records(good.slice(40, 45), 'g2', 1_765_000_200_000));
  const champion = path.join(modelDir, 'rmbert-medical-kg-crf');
  const third = await train(['--min-examples', '5']);
  assert.equal(third.code, 0, third.err);
  const started = third.events.find((e) => e.msg === 'round started')!;
  store = await readStore();
  const trainable = store.documents.filter((d) => d.split === 'train' && d.status === 'active');
  assert.equal(started.trainDocuments, trainable.length);
  assert.ok(trainable.filter((d) => d.documentId.startsWith('g-')).length >= 30);
  // The holdout survived the restart unchanged (the new documents may add to it).
  for (const id of holdoutAfterSecond) assert.equal(store.documents.find((d) => d.documentId === id)?.split, 'holdout');
  const promoted = third.events.find((e) => e.msg === 'challenger promoted');
  assert.ok(promoted, `not promoted: ${JSON.stringify(third.events.find((e) => e.msg === 'challenger refused'))}`);
  const figures = promoted.figures as { gold: { champion: number; challenger: number } };
  assert.ok(figures.gold.challenger >= figures.gold.champion - 0.005, JSON.stringify(figures));
  const location = String(promoted.location);
  const before = await targetError(champion, heldOut);
  const afterError = await targetError(location, heldOut);
  assert.ok(before >= 0.8, `the model already finds the targets: error ${before}`);
  assert.ok(afterError <= before / 2, `held-out target error ${before} -> ${afterError}`);
  const updates = await Collector.start(kafka, names.modelUpdates, (b): ModelUpdateRecord => codecs().modelUpdate.decode(b));
  try {
    const [u] = await updates.waitFor(1, 30_000);
    assert.equal(u.record.version, promoted.version);
  } finally {
    await updates.close();
  }
  console.log(JSON.stringify({ heldOutErrorBefore: before, heldOutErrorAfter: afterError, gold: figures.gold, trainDocuments: started.trainDocuments }));
});
