import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import { loadArtifact } from '../../../src/model/artifact.ts';
import { BertModel } from '../../../src/model/bert.ts';
import type { BertConfig } from '../../../src/model/types.ts';
import { ConfigError } from '../../../src/errors/index.ts';
import { loadCorpus, MEDICAL_TYPES, subsetSentences } from '../../../src/train/datasets.ts';
import type { NerSentence } from '../../../src/train/datasets.ts';
import { applyAblation, epochBatches, fineTune, warmupLinear } from '../../../src/train/finetune.ts';
import type { FineTuneOptions } from '../../../src/train/finetune.ts';
import { charLabelIds, prepareExamples } from '../../../src/train/evaluate.ts';
import { createInjector } from '../../../src/train/finetune.ts';

let tokenizer: BertTokenizer;
let train: NerSentence[];
let dev: NerSentence[];
const KG = path.resolve(import.meta.dirname, '../../../data/kg/Medical.spo');

before(async () => {
  // wasm: the CPU training backend here (the pure-JS cpu backend is an order of magnitude slower).
  await selectBackend('wasm', () => undefined);
  tokenizer = await BertTokenizer.load();
  const m = loadCorpus('medical');
  train = subsetSentences(m.train.sentences, 24, 3);
  dev = subsetSentences(m.dev.sentences, 8, 3);
});

function options(dir: string, over: Partial<FineTuneOptions> = {}): FineTuneOptions {
  return {
    name: 'test-ner',
    datasetName: 'medical-subset',
    train,
    dev,
    types: MEDICAL_TYPES,
    tokenizer,
    model: { random: { vocabSize: tokenizer.vocabSize, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 300, typeVocabSize: 2, layerNormEps: 1e-12 } },
    knowledge: { enabled: true, kgFile: KG, inject: 'relation+object', maxEntities: 2, maxLength: 256, softPositions: true, visibilityMatrix: true },
    optimizer: 'recadam',
    anneal: 'sigmoid',
    k: 0.5,
    t0: 4,
    gamma: 100,
    learningRate: 5e-3,
    warmup: 0.1,
    weightDecay: 0.01,
    clipNorm: 1,
    dropout: 0.1,
    epochs: 2,
    batchTokens: 512,
    maxBatchSentences: 6,
    seed: 11,
    runDir: path.join(dir, 'run'),
    outDir: path.join(dir, 'model'),
    logEvery: 2,
    log: () => undefined,
    ...over,
  };
}

test('labels align to tokens: injected and special tokens are ignored, a multi-character token takes its first character\'s label', async () => {
  const { injector } = await createInjector(tokenizer, options('/nonexistent').knowledge);
  // 中上腹痛 is a symptom in Medical.spo; 2016 is one WordPiece token.
  const s: NerSentence = {
    chars: [...'患者中上腹痛2016年'],
    text: '患者中上腹痛2016年',
    labels: ['O', 'O', 'B-Symptom', 'I-Symptom', 'I-Symptom', 'I-Symptom', 'B-Examine', 'I-Examine', 'I-Examine', 'I-Examine', 'O'],
    repaired: [],
  };
  const labels = ['O', 'B-Examine', 'I-Examine', 'B-Symptom', 'I-Symptom'];
  assert.deepEqual(Array.from(charLabelIds(s, new Map(labels.map((l, i) => [l, i])))), [0, 0, 3, 4, 4, 4, 1, 2, 2, 2, 0]);
  const set = await prepareExamples([s], injector, labels);
  const ex = set.examples[0];
  const tokens = Array.from(ex.tree.tokenIds, (id) => tokenizer.tokenOf(id));
  assert.deepEqual(tokens, ['[CLS]', '患', '者', '中', '上', '腹', '痛', '类', '别', '症', '状', '2016', '年', '[SEP]']);
  assert.deepEqual(Array.from(ex.labelIds), [-1, 0, 0, 3, 4, 4, 4, -1, -1, -1, -1, 1, 0, -1]);
  assert.equal(set.stats.injectedTokens, 4);
});

test('warm-up/decay schedule and ablation mapping', () => {
  const lr = warmupLinear(1, 10, 110);
  assert.equal(lr(5), 0.5);
  assert.equal(lr(10), 1);
  assert.equal(lr(60), 0.5);
  assert.equal(lr(110), 0);
  const k = options('/x').knowledge;
  assert.deepEqual(applyAblation('no-mask', k, 'recadam'), { knowledge: { ...k, visibilityMatrix: false }, optimizer: 'recadam' });
  assert.deepEqual(applyAblation('no-pos', k, 'recadam'), { knowledge: { ...k, softPositions: false }, optimizer: 'recadam' });
  assert.deepEqual(applyAblation('no-kg', k, 'recadam'), { knowledge: { ...k, enabled: false }, optimizer: 'recadam' });
  assert.deepEqual(applyAblation('no-recall', k, 'recadam'), { knowledge: k, optimizer: 'adam' });
});

test('epoch batches respect the token budget and are reproducible per (seed, epoch)', async () => {
  const { injector } = await createInjector(tokenizer, options('/x').knowledge);
  const set = await prepareExamples(train, injector, ['O', ...MEDICAL_TYPES.flatMap((t) => [`B-${t}`, `I-${t}`])]);
  const a = epochBatches(set, 0, 1, 300, 4);
  assert.deepEqual(a, epochBatches(set, 0, 1, 300, 4));
  assert.notDeepEqual(a, epochBatches(set, 1, 1, 300, 4));
  assert.deepEqual(a.flat().sort((x, y) => x - y), set.examples.map((_, i) => i));
  for (const b of a) {
    assert.ok(b.length <= 4);
    const longest = Math.max(...b.map((i) => set.examples[i].tree.tokenIds.length));
    assert.ok(b.length === 1 || longest * b.length <= 300, `batch of ${b.length} x ${longest}`);
  }
});

test('fine-tuning: loss falls, no tensor leaks, artifact with labels and knowledge options, curve and SVG', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-ft-'));
  try {
    // BertModel.init may leave its initial-value tensors behind; count what it leaves for this shape
    // so that only tensors left by fine-tuning itself fail the test.
    const probe = tf.memory().numTensors;
    BertModel.init((options(dir).model as { random: BertConfig }).random, { numLabels: 11, seed: 1 }).dispose();
    const initLeftovers = tf.memory().numTensors - probe;
    const before = tf.memory().numTensors;
    const counts: number[] = [];
    const losses: number[] = [];
    const result = await fineTune(options(dir, { epochs: 3, onStep: (s) => (counts.push(tf.memory().numTensors), losses.push(s.loss)) }));
    assert.equal(result.status, 'completed');
    assert.equal(result.epochsCompleted, 3);
    assert.ok(result.steps >= 9, `steps ${result.steps}`);
    // Same tensor count after every step (dev evaluation between epochs included), and nothing left after.
    assert.deepEqual(new Set(counts.slice(1)).size, 1, `tensor counts ${counts.join(',')}`);
    assert.equal(tf.memory().numTensors - before, initLeftovers, 'tensors left after fine-tuning');
    const first = losses.slice(0, 3).reduce((a, b) => a + b) / 3;
    const last = losses.slice(-3).reduce((a, b) => a + b) / 3;
    assert.ok(last < first, `loss ${first} -> ${last}`);

    const art = await loadArtifact(path.join(dir, 'model'));
    assert.deepEqual(art.config.labels.slice(0, 3), ['O', 'B-BodyPart', 'I-BodyPart']);
    assert.equal(art.config.labels.length, 11);
    assert.equal(art.config.knowledge.enabled, true);
    assert.equal(art.config.knowledge.inject, 'relation+object');
    assert.match(String(art.config.knowledge.kgVersion), /^[0-9a-f]{64}$/);
    assert.equal(art.config.training?.optimizer, 'recadam');
    assert.equal(art.config.training?.bestEpoch, result.bestEpoch);
    const curve = (await readFile(path.join(dir, 'run', 'curve.jsonl'), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(curve.filter((e) => e.kind === 'epoch').length, 3);
    const steps = curve.filter((e) => e.kind === 'step');
    assert.ok(steps.length >= 4);
    assert.ok(steps.every((e) => e.l1 > 0 && e.lambda > 0 && e.lambda < 1), 'RecAdam logs lambda and the L1 distance');
    const svg = await readFile(path.join(dir, 'run', 'curve.svg'), 'utf8');
    assert.match(svg, /^<\?xml[^>]*>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
    assert.match(svg, /training loss/);
    assert.match(svg, /dev F1/);
    assert.match(svg, /<path d="M/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('an interrupted run (abort = SIGINT) checkpoints and resumes to exactly the weights of an uninterrupted run', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-ft-'));
  try {
    const base = { knowledge: { ...options(dir).knowledge, enabled: false }, optimizer: 'adam' as const, dropout: 0.1 };
    const full = await fineTune(options(path.join(dir, 'a'), base));
    assert.equal(full.status, 'completed');

    const controller = new AbortController();
    const stopped = await fineTune(options(path.join(dir, 'b'), { ...base, signal: controller.signal, onStep: (s) => s.step === 3 && controller.abort() }));
    assert.equal(stopped.status, 'interrupted');
    assert.equal(stopped.steps, 3);
    assert.equal(stopped.artifact, null);
    const resumed = await fineTune(options(path.join(dir, 'b'), { ...base, resume: true }));
    assert.equal(resumed.status, 'completed');
    assert.equal(resumed.steps, full.steps);
    assert.deepEqual(resumed.history.map((h) => h.dev), full.history.map((h) => h.dev));

    const a = await loadArtifact(path.join(dir, 'a', 'model'));
    const b = await loadArtifact(path.join(dir, 'b', 'model'));
    for (const [name, w] of a.weights) assert.deepEqual(b.weights.get(name)!.data, w.data, name);

    await assert.rejects(fineTune(options(path.join(dir, 'b'), { ...base, resume: true, learningRate: 1e-3 })), (e: unknown) => e instanceof ConfigError && /lr: checkpoint has 0.005, this run 0.001/.test(e.message));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('bad settings are refused with what to fix', async () => {
  await assert.rejects(fineTune(options('/tmp/none', { learningRate: 1e-3, gamma: 5000 })), /learning rate x gamma = 5 > 1/);
  await assert.rejects(fineTune(options('/tmp/none', { train: [] })), /the training set is empty/);
  await assert.rejects(fineTune(options('/tmp/none', { batchTokens: 100 })), /batch tokens \(100\) must be at least the max length \(256\)/);
});
