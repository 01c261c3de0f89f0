import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import type { BertConfig } from '../../../src/model/types.ts';
import type { PretrainCorpus } from '../../../src/train/corpus.ts';
import {
  AdamW,
  DEFAULT_PRETRAIN_OPTIONS,
  latestCheckpoint,
  learningRateAt,
  lossCurveSvg,
  maskBatch,
  pretrain,
  SequenceOrder,
  suppressUnseenTokens,
  type PretrainOptions,
} from '../../../src/train/pretrain.ts';

let tokenizer: BertTokenizer;
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(path.join(os.tmpdir(), 'rmbert-pretrain-'));
  dirs.push(d);
  return d;
};

/** A small corpus of two repeating patterns, so a model can learn it in a few dozen steps. */
function toyCorpus(seqLen = 16, numSequences = 24): PretrainCorpus {
  const base = 2000;
  const sequences = new Int32Array(numSequences * seqLen);
  for (let q = 0; q < numSequences; q++) {
    sequences[q * seqLen] = tokenizer.clsId;
    for (let t = 1; t < seqLen - 1; t++) sequences[q * seqLen + t] = base + ((q % 2 === 0 ? t : 2 * t) % 10);
    sequences[q * seqLen + seqLen - 1] = tokenizer.sepId;
  }
  const used = new Set<number>(sequences);
  for (const id of [tokenizer.padId, tokenizer.maskId, tokenizer.unkId]) used.add(id);
  return {
    seqLen,
    sequences,
    numSequences,
    tokens: sequences.length,
    chars: sequences.length,
    sources: [{ source: 'toy', documents: numSequences, chars: sequences.length }],
    vocabUsed: Int32Array.from([...used].sort((a, b) => a - b)),
    key: 'toy',
  };
}

function toyConfig(): BertConfig {
  return { vocabSize: tokenizer.vocabSize, hiddenSize: 16, numLayers: 1, numHeads: 2, intermediateSize: 32, maxPositions: 32, typeVocabSize: 2, layerNormEps: 1e-12 };
}

function toyOptions(outDir: string, over: Partial<PretrainOptions> = {}): PretrainOptions {
  return {
    ...DEFAULT_PRETRAIN_OPTIONS,
    config: toyConfig(),
    outDir,
    batchSize: 4,
    learningRate: 5e-3,
    warmupSteps: 5,
    maxSteps: 4,
    maxMinutes: 1e6,
    checkpointMinutes: 1e6,
    ...over,
  };
}

before(async () => {
  await selectBackend('wasm', () => {});
  tokenizer = await BertTokenizer.load();
});
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe('masking', () => {
  it('masks 15% of the non-special tokens, never [CLS]/[SEP]/[PAD], 80/10/10, deterministic in (seed, step)', () => {
    const corpus = toyCorpus(64, 40);
    const subsetIndex = new Int32Array(tokenizer.vocabSize).fill(-1);
    corpus.vocabUsed.forEach((id, i) => (subsetIndex[id] = i));
    const order = new SequenceOrder(corpus.numSequences, 1);
    let targets = 0;
    let masked = 0;
    let kept = 0;
    let replaced = 0;
    for (let step = 0; step < 50; step++) {
      const b = maskBatch(corpus, tokenizer, order, step, 4, 1, 0.15, subsetIndex);
      assert.equal(b.positions.length, 4 * Math.round(62 * 0.15));
      for (let i = 0; i < b.positions.length; i++) {
        const p = b.positions[i];
        const original = corpus.vocabUsed[b.targets[i]];
        assert.ok(original !== tokenizer.clsId && original !== tokenizer.sepId && original !== tokenizer.padId);
        targets++;
        if (b.inputIds[p] === tokenizer.maskId) masked++;
        else if (b.inputIds[p] === original) kept++;
        else replaced++;
      }
      const again = maskBatch(corpus, tokenizer, new SequenceOrder(corpus.numSequences, 1), step, 4, 1, 0.15, subsetIndex);
      assert.deepEqual(again.inputIds, b.inputIds);
      assert.deepEqual(again.positions, b.positions);
    }
    assert.ok(Math.abs(masked / targets - 0.8) < 0.03, `mask share ${masked / targets}`);
    // A random replacement can draw the original token; so "kept" is a little above 10%.
    assert.ok(Math.abs(kept / targets - 0.1) < 0.03, `kept share ${kept / targets}`);
    assert.ok(Math.abs(replaced / targets - 0.1) < 0.03, `replaced share ${replaced / targets}`);
    const other = maskBatch(corpus, tokenizer, order, 0, 4, 2, 0.15, subsetIndex);
    assert.notDeepEqual(other.positions, maskBatch(corpus, tokenizer, order, 0, 4, 1, 0.15, subsetIndex).positions);
  });

  it('visits every sequence once per epoch, in a different order each epoch', () => {
    const order = new SequenceOrder(10, 3);
    const e0 = Array.from({ length: 10 }, (_, i) => order.at(i));
    const e1 = Array.from({ length: 10 }, (_, i) => order.at(10 + i));
    assert.deepEqual([...e0].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual([...e1].sort((a, b) => a - b), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.notDeepEqual(e0, e1);
  });
});

describe('schedule and optimiser', () => {
  it('warms up linearly, then decays linearly to zero', () => {
    const o = { learningRate: 1e-3, warmupSteps: 10 };
    assert.equal(learningRateAt(o, 0, 0), 1e-4);
    assert.equal(learningRateAt(o, 9, 0.01), 1e-3);
    assert.ok(Math.abs(learningRateAt(o, 50, 0.5) - 5e-4) < 1e-12);
    assert.equal(learningRateAt(o, 99, 1), 0);
  });

  it('AdamW: one step equals the hand-computed update, with clipping and decoupled weight decay', () => {
    const w = tf.variable(tf.tensor2d([[1, -2], [3, 0.5]]));
    const b = tf.variable(tf.tensor1d([0.1, -0.1]));
    const vars = new Map<string, tf.Variable>([
      ['layer.weight', w],
      ['layer.bias', b],
    ]);
    const adam = new AdamW(vars, { beta1: 0.9, beta2: 0.999, epsilon: 1e-6, weightDecay: 0.1, clipNorm: 1 });
    const gw = [3, 0, 0, 4]; // norm 5 together with gb
    const gb = [0, 0];
    const norm = adam.apply({ [w.name]: tf.tensor2d(gw, [2, 2]), [b.name]: tf.tensor1d(gb) }, 0.01, 0);
    assert.ok(Math.abs(norm.dataSync()[0] - 5) < 1e-5);
    const lr = 0.01;
    const expectW = [1, -2, 3, 0.5].map((theta, i) => {
      const g = gw[i] / 5;
      const m = 0.1 * g;
      const v = 0.001 * g * g;
      const update = m / 0.1 / (Math.sqrt(v / 0.001) + 1e-6);
      return theta - lr * (update + 0.1 * theta);
    });
    const got = w.dataSync();
    expectW.forEach((e, i) => assert.ok(Math.abs(got[i] - e) < 1e-6, `w[${i}] ${got[i]} vs ${e}`));
    // Biases get no weight decay and had zero gradient: unchanged.
    assert.deepEqual([...b.dataSync()].map((x) => +x.toFixed(6)), [0.1, -0.1]);
    adam.dispose();
  });
});

describe('pretrain loop', () => {
  it('learns a toy corpus: the loss falls well below its start', async () => {
    const out = tempDir();
    const result = await pretrain(toyCorpus(), tokenizer, toyOptions(out, { maxSteps: 80, warmupSteps: 5, learningRate: 1e-2 }));
    const first = result.lossCurve[0].loss;
    assert.ok(first > 2.5, `start loss ${first}`);
    assert.ok(result.finalLoss < first - 1, `final ${result.finalLoss} vs start ${first}`);
    assert.equal(result.steps, 80);
    assert.equal(result.tokensSeen, 80 * 4 * 16);
    const log = readFileSync(path.join(out, 'train-log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
    assert.equal(log.length, 80);
    for (const key of ['step', 'loss', 'tokensSeen', 'tokensPerSecond', 'elapsedSeconds']) assert.ok(Number.isFinite(log[79][key]), key);
    assert.match(lossCurveSvg(result.lossCurve, 'toy'), /<polyline/);
    result.model.dispose();
  });

  it('a run stopped and resumed from its checkpoint ends with the same weights as an uninterrupted run', async () => {
    const straightDir = tempDir();
    const straight = await pretrain(toyCorpus(), tokenizer, toyOptions(straightDir, { maxSteps: 4 }));
    const straightWeights = await straight.model.toWeightMap();
    straight.model.dispose();

    const splitDir = tempDir();
    const first = await pretrain(toyCorpus(), tokenizer, toyOptions(splitDir, { maxSteps: 2 }));
    first.model.dispose();
    assert.match(latestCheckpoint(splitDir)!, /ckpt-0000002$/);
    const resumed = await pretrain(toyCorpus(), tokenizer, toyOptions(splitDir, { maxSteps: 4, resume: true }));
    assert.equal(resumed.steps, 4);
    assert.equal(resumed.tokensSeen, 4 * 4 * 16);
    const resumedWeights = await resumed.model.toWeightMap();
    resumed.model.dispose();
    for (const [name, w] of straightWeights) {
      const r = resumedWeights.get(name)!;
      let diff = 0;
      for (let i = 0; i < w.data.length; i++) diff = Math.max(diff, Math.abs(w.data[i] - r.data[i]));
      assert.equal(diff, 0, name);
    }
  });

  it('refuses --resume without a checkpoint and continues from weights with a fresh optimiser', async () => {
    await assert.rejects(pretrain(toyCorpus(), tokenizer, toyOptions(tempDir(), { resume: true })), /no checkpoint/);
    const a = await pretrain(toyCorpus(), tokenizer, toyOptions(tempDir(), { maxSteps: 2 }));
    const weights = await a.model.toWeightMap();
    a.model.dispose();
    const b = await pretrain(toyCorpus(), tokenizer, toyOptions(tempDir(), { maxSteps: 1, initWeights: weights }));
    assert.equal(b.steps, 1);
    const after = await b.model.toWeightMap();
    const name = 'bert.encoder.layer.0.intermediate.dense.weight';
    let diff = 0;
    for (let i = 0; i < after.get(name)!.data.length; i++) diff = Math.max(diff, Math.abs(after.get(name)!.data[i] - weights.get(name)!.data[i]));
    assert.ok(diff > 0 && diff < 0.05, `one step from the given weights moved them by ${diff}`);
    b.model.dispose();
  });
});

describe('suppressUnseenTokens', () => {
  it('puts ids the corpus never had far below every learned MLM bias, leaving the others', () => {
    const weights = new Map([['cls.predictions.bias', { shape: [5], data: Float32Array.from([0.5, -2.2, 0, 1, 0]) }]]);
    const low = suppressUnseenTokens(weights, Int32Array.from([0, 1, 3]));
    assert.equal(low, -13);
    assert.deepEqual([...weights.get('cls.predictions.bias')!.data].map((v) => +v.toFixed(2)), [0.5, -2.2, -13, 1, -13]);
  });
});
