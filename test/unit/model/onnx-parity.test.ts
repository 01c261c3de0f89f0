/**
 * The ONNX Runtime engine against the tfjs forward pass (the model's one definition): same weights, same
 * injected sentences (hand-built sentence trees with branches, so the visibility mask really matters),
 * logits within 1e-4 relative error (max|a - b| / max|b|). Always on a small random model; also on the
 * shipped model (models/medical/ or models/backbone/) when one exists, with identical decoded entities on
 * the medical test set when the shipped model is the fine-tuned one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { writeAdditiveMask, type InjectedSentence } from '../../../src/domain/index.ts';
import { ModelError } from '../../../src/errors/index.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertModel } from '../../../src/model/bert.ts';
import { OnnxEngine, type OnnxEngineOptions } from '../../../src/model/onnx/index.ts';
import type { ArtifactConfig, BertConfig, ModelArtifact, WeightMap } from '../../../src/model/types.ts';
import { REPO_ROOT, sharedData } from '../../helpers/paths.ts';
import { randomWeights, sentenceTree, mulberry32, type Rng } from './onnx-fixtures.ts';

await selectBackend('auto', () => {});

function relativeError(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < a.length; i++) {
    diff = Math.max(diff, Math.abs(a[i] - b[i]));
    scale = Math.max(scale, Math.abs(b[i]));
  }
  return diff / scale;
}

/** tfjs logits per sentence: one padded batch, mask from writeAdditiveMask, rows cut back to each length. */
async function tfjsLogits(model: BertModel, sentences: readonly InjectedSentence[]): Promise<Float32Array[]> {
  const B = sentences.length;
  const T = Math.max(...sentences.map((s) => s.tokenIds.length));
  const ids = new Int32Array(B * T);
  const pos = new Int32Array(B * T);
  const seg = new Int32Array(B * T);
  const mask = new Float32Array(B * T * T);
  sentences.forEach((s, b) => {
    ids.set(s.tokenIds, b * T);
    pos.set(s.softPositions, b * T);
    seg.set(s.segmentIds, b * T);
    writeAdditiveMask(s, mask, b * T * T, T);
  });
  const logits = tf.tidy(() =>
    model.tokenLogits({
      tokenIds: tf.tensor2d(ids, [B, T], 'int32'),
      softPositions: tf.tensor2d(pos, [B, T], 'int32'),
      segmentIds: tf.tensor2d(seg, [B, T], 'int32'),
      mask: tf.tensor3d(mask, [B, T, T]),
    }),
  );
  const data = (await logits.data()) as Float32Array;
  logits.dispose();
  const L = model.numLabels;
  return sentences.map((s, b) => data.slice(b * T * L, (b * T + s.tokenIds.length) * L));
}

function artifactOf(config: BertConfig, weights: WeightMap, labels: string[]): ModelArtifact {
  const artifactConfig: ArtifactConfig = {
    name: 'parity-test',
    model: config,
    labels,
    vocabSha256: '',
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 128, enabled: true },
    createdAt: new Date(0).toISOString(),
  };
  return { dir: '', config: artifactConfig, weights, version: { name: 'parity-test', hash: '000000000000' } };
}

const SMALL: BertConfig = {
  vocabSize: 300,
  hiddenSize: 64,
  numLayers: 2,
  numHeads: 4,
  intermediateSize: 128,
  maxPositions: 96,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
};
const LABELS = ['O', 'B-Disease', 'I-Disease', 'B-Symptom', 'I-Symptom'];

/** Random sentence trees: 1-3 matched names with 1-2 branches each, lengths 3..60. */
function randomSentences(rng: Rng, count: number, config: BertConfig): InjectedSentence[] {
  const out: InjectedSentence[] = [];
  for (let k = 0; k < count; k++) {
    const n = 3 + Math.floor(rng() * 40);
    const ids = Array.from({ length: n }, () => 1 + Math.floor(rng() * (config.vocabSize - 1)));
    const matches: { start: number; end: number; branches: number[][] }[] = [];
    let cursor = 1;
    while (matches.length < 3 && cursor + 2 < n) {
      const start = cursor + Math.floor(rng() * 4);
      const end = Math.min(n, start + 1 + Math.floor(rng() * 3));
      if (start >= end) break;
      const branchCount = 1 + Math.floor(rng() * 2);
      matches.push({
        start,
        end,
        branches: Array.from({ length: branchCount }, () =>
          Array.from({ length: 2 + Math.floor(rng() * 3) }, () => 1 + Math.floor(rng() * (config.vocabSize - 1))),
        ),
      });
      cursor = end + 1 + Math.floor(rng() * 5);
    }
    out.push(sentenceTree(ids, matches, { cls: 2 }));
  }
  return out;
}

test('hand-built sentence tree follows the paper: soft positions and visibility of the worked example', () => {
  // 新冠肺炎可通过呼吸道飞沫传播 with 新冠肺炎 -> 类别疾病 and 呼吸道 -> 类别部位 (ARCHITECTURE.md).
  const ids = Array.from({ length: 14 }, (_, i) => 10 + i);
  const s = sentenceTree(ids, [
    { start: 0, end: 4, branches: [[100, 101, 102, 103]] },
    { start: 7, end: 10, branches: [[100, 101, 104, 105]] },
  ]);
  assert.deepEqual([...s.softPositions], [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 10, 11, 12, 13]);
  const mask = new Float32Array(22 * 22);
  writeAdditiveMask(s, mask, 0, 22);
  const visible = (i: number, j: number) => mask[i * 22 + j] === 0;
  assert.ok(visible(0, 5) && visible(5, 0), 'name sees its branch');
  assert.ok(!visible(8, 5) && !visible(5, 8), '可 does not see 类别疾病');
  assert.ok(visible(8, 21) && visible(0, 13), 'sentence tokens see each other');
  assert.ok(!visible(5, 15), 'branches do not see each other');
});

test('ONNX engine logits match the tfjs forward pass on a random model (every graph form)', async () => {
  const rng = mulberry32(7);
  // BertModel.init gives N(0, 0.02) weights, under which attention is almost uniform and the mask barely
  // moves the output; larger query/key weights make attention peaked and larger value/output weights let
  // it move the hidden states, so a wrong mask would show.
  const init = BertModel.init(SMALL, { numLabels: LABELS.length, seed: 11 });
  const weights = await init.toWeightMap();
  init.dispose();
  for (const [name, w] of weights) {
    if (/attention\.self\.(query|key)\.weight$/.test(name)) w.data.forEach((v, i) => (w.data[i] = v * 30));
    if (/attention\.(self\.value|output\.dense)\.weight$/.test(name)) w.data.forEach((v, i) => (w.data[i] = v * 10));
    if (name === 'classifier.bias') w.data.forEach((_, i) => (w.data[i] = rng() - 0.5));
  }
  const model = BertModel.fromWeights(SMALL, weights);
  const sentences = randomSentences(rng, 24, SMALL);
  assert.ok(sentences.some((s) => s.branch.some((b) => b >= 0)), 'test sentences carry injected branches');
  const reference = await tfjsLogits(model, sentences);

  // The mask must matter for this model, or the comparison would not test it.
  const blind = sentences.map((s) => ({ ...s, branch: new Int32Array(s.branch.length).fill(-1), anchor: new Int32Array(s.branch.length).fill(-1) }));
  const blindLogits = await tfjsLogits(model, blind);
  const maskEffect = Math.max(...reference.map((r, i) => relativeError(blindLogits[i], r)));
  assert.ok(maskEffect > 0.05, `visibility changes the logits (max relative change ${maskEffect})`);

  const artifact = artifactOf(SMALL, weights, LABELS);
  const forms: [string, OnnxEngineOptions][] = [
    ['fused (Attention)', {}],
    ['fused (MultiHeadAttention)', { graph: { attentionOp: 'MultiHeadAttention' } }],
    ['standard ops', { graph: { form: 'standard' } }],
    // Small batches: sentences land in different buckets and padding than in the tfjs batch.
    ['fused, batches of <= 5 sentences / 128 tokens', { maxBatchSize: 5, maxBatchTokens: 128 }],
  ];
  for (const [label, options] of forms) {
    const engine = await OnnxEngine.load(artifact, { threads: 1, ...options });
    try {
      const logits = await engine.classify(sentences);
      assert.equal(logits.length, sentences.length);
      logits.forEach((l, i) => assert.equal(l.length, sentences[i].tokenIds.length * LABELS.length));
      const worst = Math.max(...logits.map((l, i) => relativeError(l, reference[i])));
      assert.ok(worst < 1e-4, `${label}: max relative error ${worst.toExponential(2)} >= 1e-4`);
    } finally {
      await engine.dispose();
    }
  }
  model.dispose();
});

test('int8 engine stays close to fp32 on a random model (quantisation error is bounded, not zero)', async () => {
  const rng = mulberry32(3);
  const weights = randomWeights(SMALL, LABELS.length, rng, 0.08);
  const sentences = randomSentences(rng, 16, SMALL);
  const artifact = artifactOf(SMALL, weights, LABELS);
  const fp32 = await OnnxEngine.load(artifact, { threads: 1 });
  const int8 = await OnnxEngine.load(artifact, { threads: 1, quantize: 'int8' });
  try {
    assert.equal(int8.name, 'onnxruntime-cpu-int8');
    const a = await fp32.classify(sentences);
    const b = await int8.classify(sentences);
    const worst = Math.max(...b.map((l, i) => relativeError(l, a[i])));
    assert.ok(worst > 1e-6 && worst < 0.05, `int8 relative error ${worst}`);
  } finally {
    await fp32.dispose();
    await int8.dispose();
  }
});

test('bad input is refused with a ModelError naming the sentence, and the engine keeps working', async () => {
  const rng = mulberry32(5);
  const weights = randomWeights(SMALL, LABELS.length, rng, 0.05);
  const engine = await OnnxEngine.load(artifactOf(SMALL, weights, LABELS), { threads: 1 });
  try {
    const good = randomSentences(rng, 2, SMALL);
    const badId = { ...good[0], tokenIds: good[0].tokenIds.map((v, i) => (i === 1 ? SMALL.vocabSize : v)) };
    await assert.rejects(engine.classify([good[1], badId]), (e: unknown) => e instanceof ModelError && /sentence 1: token id 300/.test(e.message));
    const badPos = { ...good[0], softPositions: good[0].softPositions.map((v, i) => (i === 0 ? SMALL.maxPositions : v)) };
    await assert.rejects(engine.classify([badPos]), /soft position 96 at 0/);
    const empty = sentenceTree([], []);
    await assert.rejects(engine.classify([empty]), /has no tokens/);
    assert.equal((await engine.classify(good)).length, 2);
    assert.deepEqual(await engine.classify([]), []);
  } finally {
    await engine.dispose();
  }
  await assert.rejects(engine.classify([]), /disposed/);
});

test('an artifact without a classification head is refused', async () => {
  const weights = randomWeights(SMALL, LABELS.length, mulberry32(1), 0.05);
  weights.delete('classifier.weight');
  await assert.rejects(OnnxEngine.load(artifactOf(SMALL, weights, [])), (e: unknown) => e instanceof ModelError && /classification head/.test(e.message));
});

// ---------------------------------------------------------------------------------------------
// The shipped model, when one exists.

const SHIPPED = ['models/medical', 'models/backbone'].map((d) => path.join(REPO_ROOT, d)).find((d) => fs.existsSync(path.join(d, 'config.json')));

test('ONNX engine matches tfjs on the shipped model', { skip: SHIPPED ? false : 'no shipped model yet (models/medical/ or models/backbone/ has no config.json)' }, async () => {
  const { loadArtifact } = await import('../../../src/model/artifact.ts');
  const artifact = await loadArtifact(SHIPPED!);
  let weights = artifact.weights;
  let labels = artifact.config.labels;
  if (!weights.has('classifier.weight')) {
    // A backbone: give it a random head so the whole graph runs.
    labels = LABELS;
    const rng = mulberry32(9);
    const H = artifact.config.model.hiddenSize;
    weights = new Map(weights);
    weights.set('classifier.weight', { shape: [labels.length, H], data: Float32Array.from({ length: labels.length * H }, () => (rng() - 0.5) * 0.2) });
    weights.set('classifier.bias', { shape: [labels.length], data: new Float32Array(labels.length) });
  }
  const config = artifact.config.model;
  const model = BertModel.fromWeights(config, weights);
  const sentences = randomSentences(mulberry32(13), 16, config);
  const reference = await tfjsLogits(model, sentences);
  const engine = await OnnxEngine.load({ ...artifact, weights, config: { ...artifact.config, labels } }, { threads: 2 });
  try {
    const logits = await engine.classify(sentences);
    const worst = Math.max(...logits.map((l, i) => relativeError(l, reference[i])));
    assert.ok(worst < 1e-4, `shipped model: max relative error ${worst.toExponential(2)} >= 1e-4`);
  } finally {
    await engine.dispose();
    model.dispose();
  }
});

// RMBERT_PARITY_MEDICAL_MODEL points the check at another fine-tuned artifact directory.
const FINE_TUNED = process.env.RMBERT_PARITY_MEDICAL_MODEL ?? path.join(REPO_ROOT, 'models/medical');
const MEDICAL_TEST = sharedData('kbert-medical-ner', 'test.tsv');

test(
  'ONNX engine decodes the same entities as tfjs on the medical test set (fine-tuned model)',
  { skip: fs.existsSync(path.join(FINE_TUNED, 'config.json')) ? false : 'no fine-tuned model yet (models/medical/ has no config.json)' },
  async () => {
    const { loadArtifact } = await import('../../../src/model/artifact.ts');
    const { BertTokenizer } = await import('../../../src/model/tokenizer.ts');
    const { decodeSentence } = await import('../../../src/model/decode.ts');
    const { readKbertTsv, MEDICAL_TYPES } = await import('../../../src/train/datasets.ts');
    const { prepareExamples } = await import('../../../src/train/evaluate.ts');
    const kg = await import('../../../src/knowledge/index.ts');
    const artifact = await loadArtifact(FINE_TUNED);
    const k = artifact.config.knowledge;
    let source = null;
    if (k.enabled) {
      const graph = new kg.InMemoryKnowledgeGraph();
      await kg.loadSpoFile(path.join(REPO_ROOT, 'data/kg/Medical.spo'), graph);
      source = kg.staticKnowledge(await kg.createSnapshot(graph, { maxEntities: k.maxEntities }));
    }
    const injector = new kg.KnowledgeInjector(await BertTokenizer.load(), source, {
      knowledge: k.enabled,
      inject: k.inject,
      maxEntities: k.maxEntities,
      maxLength: k.maxLength,
    });
    const set = await prepareExamples(readKbertTsv(MEDICAL_TEST, { types: MEDICAL_TYPES }).sentences, injector, artifact.config.labels);
    const trees = set.examples.map((e) => e.tree);
    assert.ok(trees.length >= 755, `${trees.length} model inputs for the 755 test sentences`);

    const model = BertModel.fromWeights(artifact.config.model, artifact.weights, undefined, { mlmHead: false });
    const engine = await OnnxEngine.load(artifact, { threads: 2 });
    try {
      const onnxLogits = await engine.classify(trees);
      // tfjs in length-sorted batches of 32.
      const order = trees.map((_, i) => i).sort((a, b) => trees[a].tokenIds.length - trees[b].tokenIds.length);
      const tfjsLogitsAll = new Array<Float32Array>(trees.length);
      for (let from = 0; from < order.length; from += 32) {
        const part = order.slice(from, from + 32);
        (await tfjsLogits(model, part.map((i) => trees[i]))).forEach((l, j) => (tfjsLogitsAll[part[j]] = l));
      }
      let worst = 0;
      let entities = 0;
      trees.forEach((tree, i) => {
        worst = Math.max(worst, relativeError(onnxLogits[i], tfjsLogitsAll[i]));
        const a = decodeSentence(tree, onnxLogits[i], artifact.config.labels);
        const b = decodeSentence(tree, tfjsLogitsAll[i], artifact.config.labels);
        assert.deepEqual(
          a.map((s) => [s.firstToken, s.lastToken, s.type]),
          b.map((s) => [s.firstToken, s.lastToken, s.type]),
          `window ${i}: decoded entities differ`,
        );
        a.forEach((s, j) => assert.ok(Math.abs(s.score - b[j].score) < 1e-4));
        entities += a.length;
      });
      assert.ok(worst < 1e-4, `medical test set: max relative error ${worst.toExponential(2)} >= 1e-4`);
      assert.ok(entities > 500, `the fine-tuned model finds entities (${entities})`);
    } finally {
      await engine.dispose();
      model.dispose();
    }
  },
);
