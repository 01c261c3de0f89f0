/**
 * One continual round with a tiny random model (1 layer, hidden 16): it starts from the champion's
 * weights, head included, and scores champion and challenger with the project's evaluation.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SHIPPED_GOLD_FILE } from '../../../src/config/trainer.ts';
import { loadArtifact, writeArtifact } from '../../../src/model/artifact.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertModel } from '../../../src/model/bert.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import type { BertConfig, ModelArtifact } from '../../../src/model/types.ts';
import { ContinualTrainer, crfBatchTensors, crfConstants, crfNegLogLikelihood } from '../../../src/train/continual.ts';
import type { ContinualOptions } from '../../../src/train/continual.ts';
import { bioLabels, MEDICAL_TYPES, readKbertTsv } from '../../../src/train/datasets.ts';
import type { NerSentence } from '../../../src/train/datasets.ts';
import { createInjector, evaluateModel, loadNerModel, prepareExamples } from '../../../src/train/evaluate.ts';

let dir: string;
let tokenizer: BertTokenizer;
let champion: ModelArtifact;
let gold: NerSentence[];
let feedback: NerSentence[];
let holdout: NerSentence[];

const OPTIONS: ContinualOptions = {
  learningRate: 1e-4,
  gamma: 100,
  anneal: 'sigmoid',
  k: 0.5,
  t0: 2,
  epochs: 2,
  maxSteps: 3,
  maxMinutes: 5,
  batchTokens: 512,
  batchSize: 4,
  seed: 5,
};

before(async () => {
  await selectBackend('wasm', () => undefined);
  tokenizer = await BertTokenizer.load();
  dir = await mkdtemp(path.join(os.tmpdir(), 'trainer-round-'));
  const config: BertConfig = { vocabSize: tokenizer.vocabSize, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 128, typeVocabSize: 2, layerNormEps: 1e-12 };
  const labels = bioLabels(MEDICAL_TYPES);
  const model = BertModel.init(config, { numLabels: labels.length, seed: 3 });
  const weights = await model.toWeightMap();
  model.dispose();
  champion = await writeArtifact(
    path.join(dir, 'rmbert-tiny'),
    { name: 'rmbert-tiny', model: config, labels, vocabSha256: tokenizer.vocabSha256, knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 96, enabled: false }, createdAt: new Date(0).toISOString() },
    weights,
    { dtype: 'F32' },
  );
  const all = readKbertTsv(SHIPPED_GOLD_FILE).sentences;
  gold = all.slice(0, 8);
  feedback = all.slice(8, 14);
  holdout = all.slice(14, 17);
});

after(async () => {
  await rm(dir, { recursive: true, force: true });
});

function trainer(): ContinualTrainer {
  return new ContinualTrainer({ tokenizer, kgFile: null, gold: { name: 'gold-8', sentences: gold } });
}

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

test("a round starts from the champion's weights, the classification head included, and scores both with the project's evaluation", async () => {
  const result = await trainer().runRound({ championDir: champion.dir, train: feedback, holdout, options: OPTIONS });
  assert.equal(result.status, 'step-limit');
  assert.equal(result.steps, 3);
  assert.ok(result.challenger);
  // Three Adam steps of lr <= 1e-4 move a weight by at most ~3e-4; a newly initialised head (N(0, 0.02)) would be ~0.05 away.
  for (const name of ['classifier.weight', 'classifier.bias', 'bert.encoder.layer.0.attention.self.query.weight']) {
    const diff = maxAbsDiff(result.challenger.get(name)!.data, champion.weights.get(name)!.data);
    assert.ok(diff > 0 && diff < 1e-3, `${name}: ${diff}`);
  }
  assert.ok(result.distanceL1 > 0);
  assert.ok(Number.isFinite(result.meanLoss) && result.meanLoss > 0);
  assert.equal(result.champion.version, `${champion.version.name}+${champion.version.hash}`);
  assert.equal(result.gold.sentences, 8);
  assert.equal(result.holdout.sentences, 3);

  // The champion's figures are those of the project's own evaluation of the artifact.
  const loaded = await loadNerModel(champion.dir, tokenizer);
  const { injector } = await createInjector(tokenizer, { ...loaded.knowledge });
  const goldSet = await prepareExamples(gold, injector, loaded.labels);
  const holdoutSet = await prepareExamples(holdout, injector, loaded.labels);
  const direct = (await evaluateModel(loaded.model, loaded.labels, goldSet, loaded.types, { padId: tokenizer.padId })).evaluation.strict;
  const directHoldout = (await evaluateModel(loaded.model, loaded.labels, holdoutSet, loaded.types, { padId: tokenizer.padId })).evaluation.strict;
  loaded.model.dispose();
  assert.deepEqual(result.gold.champion, direct);
  assert.deepEqual(result.holdout.champion, directHoldout);
  assert.ok(direct.gold > 0);
});

test('with the task step annealed to zero and no weight decay, the challenger is the champion exactly (same F1)', async () => {
  const result = await trainer().runRound({
    championDir: champion.dir,
    train: feedback,
    holdout,
    options: { ...OPTIONS, anneal: 'sigmoid', k: 1, t0: 1_000_000, weightDecay: 0 },
  });
  assert.equal(result.distanceL1, 0);
  for (const [name, w] of result.challenger!) assert.equal(maxAbsDiff(w.data, champion.weights.get(name)!.data), 0, name);
  assert.deepEqual(result.gold.challenger, result.gold.champion);
  assert.deepEqual(result.holdout.challenger, result.holdout.champion);
});

test('an aborted round has no challenger; a promoted one is written as a versioned artifact that records its parent', async () => {
  const stop = new AbortController();
  stop.abort();
  const t = trainer();
  const aborted = await t.runRound({ championDir: champion.dir, train: feedback, holdout, options: OPTIONS, signal: stop.signal });
  assert.equal(aborted.status, 'interrupted');
  assert.equal(aborted.challenger, null);
  await assert.rejects(t.writeChallenger(aborted, dir, 'x-1.0.1', {}), /interrupted/);

  const result = await t.runRound({ championDir: champion.dir, train: feedback, holdout: [], options: { ...OPTIONS, maxSteps: 1 } });
  assert.equal(result.holdout.sentences, 0);
  const written = await t.writeChallenger(result, dir, 'rmbert-tiny-1.0.1', { steps: result.steps });
  const back = await loadArtifact(written.dir);
  assert.equal(back.config.name, 'rmbert-tiny-1.0.1');
  assert.deepEqual(back.config.labels, champion.config.labels);
  assert.equal(back.config.training?.parent, `${champion.version.name}+${champion.version.hash}`);
  assert.equal(back.config.training?.task, 'ner-feedback');
  assert.equal(maxAbsDiff(back.weights.get('classifier.weight')!.data, result.challenger!.get('classifier.weight')!.data), 0);
  assert.deepEqual(await ContinualTrainer.artifactTypes(written.dir), [...MEDICAL_TYPES]);
});

test('a gold set with a type the model does not know is a configuration error', async () => {
  const odd: NerSentence = { chars: ['头', '痛'], text: '头痛', labels: ['B-Pain', 'I-Pain'], repaired: [] };
  const t = new ContinualTrainer({ tokenizer, kgFile: null, gold: { name: 'odd', sentences: [odd] } });
  await assert.rejects(t.runRound({ championDir: champion.dir, train: feedback, holdout, options: OPTIONS }), /gold set odd has entity types the model in service does not know: Pain/);
});

test('deterministic: the same feedback, replay and settings give the same challenger; the schedule scales with the round', async () => {
  const options: ContinualOptions = { ...OPTIONS, maxSteps: 100, epochs: 2, annealRound: { t0Fraction: 0.5, span: 10 } };
  const replay = gold.slice(0, 3);
  const a = await trainer().runRound({ championDir: champion.dir, train: feedback, replay, holdout, options });
  const b = await trainer().runRound({ championDir: champion.dir, train: feedback, replay, holdout, options });
  assert.equal(a.replaySentences, 3);
  assert.equal(a.steps, b.steps);
  assert.equal(a.schedule.planned, a.steps);
  assert.equal(a.schedule.t0, a.steps / 2);
  assert.equal(a.schedule.k, 10 / a.steps);
  assert.ok(a.championL1 > 0 && a.distanceL1 > 0);
  for (const [name, w] of a.challenger!) assert.equal(maxAbsDiff(w.data, b.challenger!.get(name)!.data), 0, name);
  // Another seed gives another challenger (so the comparison above can fail).
  const c = await trainer().runRound({ championDir: champion.dir, train: feedback, replay, holdout, options: { ...options, seed: 6 } });
  let differs = false;
  for (const [name, w] of a.challenger!) if (maxAbsDiff(w.data, c.challenger!.get(name)!.data) > 0) differs = true;
  assert.ok(differs);
  assert.ok(Object.keys(a.goldTypes).length === 5 && a.goldSurfaces.length > 0);
});

test('the CRF likelihood a round trains on equals brute force over every tag path (BIO-invalid paths excluded)', async () => {
  const labels = ['O', 'B-X', 'I-X'];
  const L = 3;
  const rand = (i: number) => Math.sin(i * 12.9898) * 0.9;
  const crf = { transitions: Float64Array.from({ length: 9 }, (_, i) => rand(i + 1)), start: Float64Array.from([0.3, -0.2, 0.5]), end: Float64Array.from([0.1, 0.4, -0.3]) };
  // Two examples over T = 5 rows: labelled rows 1..3 (gold B I O) and rows 1..2 (gold O B).
  const T = 5;
  const ids = [Int32Array.from([-1, 1, 2, 0, -1]), Int32Array.from([-1, 0, 1, -1, -1])];
  const logits = Float32Array.from({ length: 2 * T * L }, (_, i) => rand(100 + i) * 2);
  const c = crfConstants(crf, labels);
  const batch = crfBatchTensors(ids, T, L);
  const tensor = (await import('@tensorflow/tfjs-core')).tensor3d(logits, [2, T, L]);
  const nll = crfNegLogLikelihood(tensor, batch, c);
  const got = (await nll.data())[0];
  tensor.dispose();
  nll.dispose();
  batch.dispose();
  c.dispose();
  const valid = (path: number[]) => path.every((t, i) => t !== 2 || (i > 0 && path[i - 1] !== 0));
  const score = (rows: number[], path: number[], b: number) =>
    path.reduce((s, t, i) => s + logits[(b * T + rows[i]) * L + t] + (i === 0 ? crf.start[t] : crf.transitions[path[i - 1] * L + t]), 0) + crf.end[path[path.length - 1]];
  let want = 0;
  for (const [b, rows, gold] of [
    [0, [1, 2, 3], [1, 2, 0]],
    [1, [1, 2], [0, 1]],
  ] as [number, number[], number[]][]) {
    const paths: number[][] = [[]];
    for (let i = 0; i < rows.length; i++) paths.splice(0, paths.length, ...paths.flatMap((p) => [0, 1, 2].map((t) => [...p, t])));
    const logZ = Math.log(paths.filter(valid).reduce((s, p) => s + Math.exp(score(rows, p, b)), 0));
    want += logZ - score(rows, gold, b);
  }
  assert.ok(Math.abs(got - want) < 1e-3, `${got} vs ${want}`);
});
