import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { MASK_NEGATIVE, writeAdditiveMask, type InjectedSentence } from '../../../src/domain/index.ts';
import { ModelError } from '../../../src/errors/index.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertModel, DEFAULT_KERNELS, gatherRowsScatterGrad, matMulExplicitGrad, parameterShapes, type BertInputs, type KernelOptions } from '../../../src/model/bert.ts';
import { mulberry32 } from '../../../src/domain/random.ts';
import type { BertConfig, WeightMap } from '../../../src/model/types.ts';
import { referenceEncode, referenceMlmLogits, referenceTokenLogits, type RefInput } from './bert-reference.ts';

const config: BertConfig = {
  vocabSize: 40,
  hiddenSize: 12,
  numLayers: 2,
  numHeads: 3,
  intermediateSize: 20,
  maxPositions: 16,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
};
const NUM_LABELS = 5;

/** Every weight random (biases and LayerNorm too), so a layout or formula slip shows up in the numbers. */
function randomWeights(seed: number, cfg: BertConfig = config): WeightMap {
  const rnd = mulberry32(seed);
  const weights: WeightMap = new Map();
  for (const [name, shape] of parameterShapes(cfg, NUM_LABELS, true)) {
    const n = shape.reduce((a, b) => a * b, 1);
    const scale = name.includes('LayerNorm.weight') ? 0 : 0.5;
    const data = Float32Array.from({ length: n }, () => (name.includes('LayerNorm.weight') ? 1 : 0) + (rnd() * 2 - 1) * (scale || 0.3));
    weights.set(name, { shape, data });
  }
  return weights;
}

/** The paper's sentence-tree shape: tokens 0-3 original, 4-5 a branch hanging on 2-3, 6-7 original again. */
function treeSentence(ids: number[]): InjectedSentence {
  const branch = Int32Array.from([-1, -1, -1, -1, 4, 4, -1, -1]);
  const anchor = Int32Array.from([-1, -1, 2, 2, 2, 2, -1, -1]);
  return {
    tokenIds: Int32Array.from(ids),
    softPositions: Int32Array.from([0, 1, 2, 3, 4, 5, 4, 5]),
    segmentIds: Int32Array.from([0, 0, 0, 0, 0, 0, 1, 1]),
    branch,
    anchor,
    charStart: new Int32Array(8).fill(-1),
    charEnd: new Int32Array(8).fill(-1),
  };
}

function toInputs(sentences: InjectedSentence[], T: number): BertInputs {
  const B = sentences.length;
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
  return {
    tokenIds: tf.tensor2d(ids, [B, T], 'int32'),
    softPositions: tf.tensor2d(pos, [B, T], 'int32'),
    segmentIds: tf.tensor2d(seg, [B, T], 'int32'),
    mask: tf.tensor3d(mask, [B, T, T]),
  };
}

function toRef(s: InjectedSentence): RefInput {
  const T = s.tokenIds.length;
  const mask = new Float32Array(T * T);
  writeAdditiveMask(s, mask, 0, T);
  return {
    tokenIds: [...s.tokenIds],
    softPositions: [...s.softPositions],
    segmentIds: [...s.segmentIds],
    mask: Array.from({ length: T }, (_, i) => [...mask.subarray(i * T, (i + 1) * T)]),
  };
}

function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  assert.equal(a.length, b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]));
  return m;
}

before(async () => {
  await selectBackend('cpu', () => {});
});

describe('BertModel forward pass', () => {
  it('matches a plain-JS BERT (hidden states, token logits, MLM logits) with a visibility mask and soft positions', () => {
    const weights = randomWeights(7);
    const model = BertModel.fromWeights(config, weights, NUM_LABELS);
    const s = treeSentence([1, 5, 9, 11, 20, 21, 3, 2]);
    const inputs = toInputs([s], 8);
    const hidden = model.encode(inputs);
    const logits = model.tokenLogits(inputs);
    const mlm = model.mlmLogits(hidden, tf.tensor1d([2, 6], 'int32'));
    const refHidden = referenceEncode(config, weights, toRef(s));
    assert.ok(maxAbsDiff(hidden.dataSync(), refHidden.flat()) < 1e-4, 'hidden states');
    assert.ok(maxAbsDiff(logits.dataSync(), referenceTokenLogits(config, weights, toRef(s), NUM_LABELS).flat()) < 1e-4, 'token logits');
    const refMlm = [...referenceMlmLogits(config, weights, refHidden[2]), ...referenceMlmLogits(config, weights, refHidden[6])];
    assert.ok(maxAbsDiff(mlm.dataSync(), refMlm) < 1e-4, 'MLM logits');
    // The numbers are not trivially small: a wrong layout would be far off.
    assert.ok(Math.max(...refMlm.map(Math.abs)) > 0.5);
    model.dispose();
  });

  it('gives the same logits for a sentence alone and padded in a batch with a longer one', () => {
    const model = BertModel.fromWeights(config, randomWeights(8), NUM_LABELS);
    const a = treeSentence([1, 5, 9, 11, 20, 21, 3, 2]);
    const short: InjectedSentence = {
      tokenIds: Int32Array.from([1, 7, 2]),
      softPositions: Int32Array.from([0, 1, 2]),
      segmentIds: new Int32Array(3),
      branch: new Int32Array(3).fill(-1),
      anchor: new Int32Array(3).fill(-1),
      charStart: new Int32Array(3),
      charEnd: new Int32Array(3),
    };
    const alone = model.tokenLogits(toInputs([short], 3)).dataSync();
    const batched = model.tokenLogits(toInputs([a, short], 8)).dataSync();
    assert.ok(maxAbsDiff(alone, batched.subarray(8 * NUM_LABELS, 8 * NUM_LABELS + 3 * NUM_LABELS)) < 1e-5);
    model.dispose();
  });

  it('an invisible token cannot influence a token within a layer; a visible one does', () => {
    const one = { ...config, numLayers: 1 };
    const model = BertModel.fromWeights(one, randomWeights(9, one), NUM_LABELS);
    const base = model.encode(toInputs([treeSentence([1, 5, 9, 11, 20, 21, 3, 2])], 8)).arraySync()[0];
    // Token 4 is on the branch hanging on tokens 2-3: invisible to tokens 0, 1, 6, 7.
    const changedBranch = model.encode(toInputs([treeSentence([1, 5, 9, 11, 33, 21, 3, 2])], 8)).arraySync()[0];
    for (const t of [0, 1, 6, 7]) assert.equal(maxAbsDiff(base[t], changedBranch[t]), 0, `token ${t} must not see the branch`);
    for (const t of [2, 3, 4, 5]) assert.ok(maxAbsDiff(base[t], changedBranch[t]) > 1e-3, `token ${t} sees the branch`);
    // Token 1 is original: visible to every original token, invisible to the branch tokens 4-5.
    const changedOriginal = model.encode(toInputs([treeSentence([1, 30, 9, 11, 20, 21, 3, 2])], 8)).arraySync()[0];
    for (const t of [0, 2, 3, 6, 7]) assert.ok(maxAbsDiff(base[t], changedOriginal[t]) > 1e-3, `token ${t} sees token 1`);
    for (const t of [4, 5]) assert.equal(maxAbsDiff(base[t], changedOriginal[t]), 0, `branch token ${t} must not see token 1`);
    model.dispose();
  });

  it('across layers the branch reaches the sentence only through the name it hangs on (K-BERT)', () => {
    const model = BertModel.fromWeights(config, randomWeights(9), NUM_LABELS);
    const base = model.encode(toInputs([treeSentence([1, 5, 9, 11, 20, 21, 3, 2])], 8)).arraySync()[0];
    const changedBranch = model.encode(toInputs([treeSentence([1, 5, 9, 11, 33, 21, 3, 2])], 8)).arraySync()[0];
    // Layer 1: tokens 2-3 read the branch; layer 2: token 0 reads tokens 2-3.
    assert.ok(maxAbsDiff(base[0], changedBranch[0]) > 1e-4);
    model.dispose();
  });

  it('uses the additive mask value the domain writes', () => {
    const s = treeSentence([1, 2, 3, 4, 5, 6, 7, 8]);
    const mask = new Float32Array(64);
    writeAdditiveMask(s, mask, 0, 8);
    assert.equal(mask[0 * 8 + 4], MASK_NEGATIVE);
    assert.equal(mask[2 * 8 + 4], 0);
  });

  it('inference (folded query scale) equals the training pass without dropout', () => {
    const model = BertModel.fromWeights(config, randomWeights(10), NUM_LABELS, { dropout: 0 });
    const inputs = toInputs([treeSentence([1, 5, 9, 11, 20, 21, 3, 2])], 8);
    const inference = model.tokenLogits(inputs).dataSync();
    const training = model.tokenLogits(inputs, true).dataSync();
    assert.ok(maxAbsDiff(inference, training) < 1e-5);
    model.dispose();
  });

  it('embeddings summed in JavaScript (inference on wasm/cpu) equal tf.gather, and both attention forms agree', () => {
    const model = BertModel.fromWeights(config, randomWeights(16), NUM_LABELS);
    const inputs = toInputs([treeSentence([1, 5, 9, 11, 20, 21, 3, 2]), treeSentence([4, 4, 7, 8, 9, 10, 11, 12])], 8);
    try {
      model.kernels = { ...model.kernels, inferenceEmbeddings: 'js', attention: 'loop' };
      const js = model.tokenLogits(inputs).dataSync();
      model.kernels = { ...model.kernels, inferenceEmbeddings: 'gather', attention: 'batched' };
      const gathered = model.tokenLogits(inputs).dataSync();
      assert.ok(maxAbsDiff(js, gathered) < 1e-5);
      model.kernels = { ...model.kernels, inferenceEmbeddings: 'js' };
      const bad = toInputs([treeSentence([1, 5, 9, 11, 20, 21, 3, 40])], 8);
      assert.throws(() => model.encode(bad), /token id 40/);
      // Kernel forms belong to the model: another model is unaffected.
      const other = BertModel.fromWeights(config, randomWeights(16), NUM_LABELS);
      assert.deepEqual(other.kernels, DEFAULT_KERNELS);
      other.dispose();
    } finally {
      model.dispose();
    }
  });

  it('dropout changes training outputs, seeded: the same seed gives the same masks', () => {
    const a = BertModel.fromWeights(config, randomWeights(11), NUM_LABELS, { dropout: 0.3, seed: 5 });
    const b = BertModel.fromWeights(config, randomWeights(11), NUM_LABELS, { dropout: 0.3, seed: 5 });
    const inputs = toInputs([treeSentence([1, 5, 9, 11, 20, 21, 3, 2])], 8);
    const ta = a.tokenLogits(inputs, true).dataSync();
    const tb = b.tokenLogits(inputs, true).dataSync();
    assert.equal(maxAbsDiff(ta, tb), 0);
    assert.ok(maxAbsDiff(ta, a.tokenLogits(inputs).dataSync()) > 1e-3);
    a.dispose();
    b.dispose();
  });
});

describe('BertModel weights', () => {
  it('toWeightMap returns exactly the HF names, shapes and values it was built from', async () => {
    const weights = randomWeights(12);
    const model = BertModel.fromWeights(config, weights, NUM_LABELS);
    const out = await model.toWeightMap();
    assert.deepEqual([...out.keys()].sort(), [...weights.keys()].sort());
    for (const [name, w] of weights) {
      assert.deepEqual(out.get(name)!.shape, w.shape, name);
      assert.equal(maxAbsDiff(out.get(name)!.data, w.data), 0, name);
    }
    // Linear weights are held [in, out] inside the model.
    assert.deepEqual(model.variables.get('bert.encoder.layer.0.intermediate.dense.weight')!.shape, [config.hiddenSize, config.intermediateSize]);
    model.dispose();
  });

  it('init: BERT initialisation, requested heads only', async () => {
    const model = BertModel.init(config, { seed: 3, numLabels: 4, mlmHead: false });
    const w = await model.toWeightMap();
    assert.ok(w.has('classifier.weight') && !w.has('cls.predictions.bias'));
    assert.deepEqual(w.get('classifier.weight')!.shape, [4, config.hiddenSize]);
    const emb = w.get('bert.embeddings.word_embeddings.weight')!.data;
    const std = Math.sqrt(emb.reduce((a, v) => a + v * v, 0) / emb.length);
    assert.ok(std > 0.012 && std < 0.025, `init std ${std}`);
    assert.ok(w.get('bert.embeddings.LayerNorm.weight')!.data.every((v) => v === 1));
    assert.ok(w.get('classifier.bias')!.data.every((v) => v === 0));
    const again = await BertModel.init(config, { seed: 3, numLabels: 4 }).toWeightMap();
    assert.equal(maxAbsDiff(again.get('bert.embeddings.word_embeddings.weight')!.data, emb), 0);
    model.dispose();
  });

  it('fromWeights names what is missing or mis-shaped', () => {
    const weights = randomWeights(13);
    weights.delete('bert.encoder.layer.1.output.dense.bias');
    weights.set('bert.embeddings.LayerNorm.bias', { shape: [3], data: new Float32Array(3) });
    assert.throws(() => BertModel.fromWeights(config, weights), (e: unknown) => {
      assert.ok(e instanceof ModelError);
      assert.match(e.message, /missing bert\.encoder\.layer\.1\.output\.dense\.bias/);
      assert.match(e.message, /LayerNorm\.bias has shape \[3\]/);
      return true;
    });
    assert.throws(() => BertModel.init({ ...config, numHeads: 5 }, { seed: 1 }), /not divisible/);
  });

  it('a backbone without classifier gets a fresh head when numLabels is given', () => {
    const weights = randomWeights(14);
    weights.delete('classifier.weight');
    weights.delete('classifier.bias');
    const model = BertModel.fromWeights(config, weights, 3, { seed: 2 });
    assert.equal(model.numLabels, 3);
    assert.deepEqual(model.variables.get('classifier.weight')!.shape, [config.hiddenSize, 3]);
    model.dispose();
  });
});

describe('training workarounds', () => {
  it('custom-gradient matMul and embedding lookup match tf.grad of the plain ops', () => {
    const x = tf.randomNormal([5, 4], 0, 1, 'float32', 1) as tf.Tensor2D;
    const wt = tf.randomNormal([4, 3], 0, 1, 'float32', 2) as tf.Tensor2D;
    const upstream = tf.randomNormal([5, 3], 0, 1, 'float32', 3);
    const plain = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(tf.matMul(a as tf.Tensor2D, b as tf.Tensor2D), upstream)))([x, wt]);
    const custom = tf.grads((a: tf.Tensor, b: tf.Tensor) => tf.sum(tf.mul(matMulExplicitGrad(a as tf.Tensor2D, b as tf.Tensor2D), upstream)))([x, wt]);
    assert.ok(maxAbsDiff(plain[0].dataSync(), custom[0].dataSync()) < 1e-5);
    assert.ok(maxAbsDiff(plain[1].dataSync(), custom[1].dataSync()) < 1e-5);

    const table = tf.randomNormal([6, 3], 0, 1, 'float32', 4) as tf.Tensor2D;
    const ids = tf.tensor1d([1, 4, 1, 1, 5], 'int32'); // repeated ids: the scatter must add, not overwrite
    const up2 = tf.randomNormal([5, 3], 0, 1, 'float32', 5);
    const g1 = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(tf.gather(t, ids), up2)))(table);
    const g2 = tf.grad((t: tf.Tensor) => tf.sum(tf.mul(gatherRowsScatterGrad(t as tf.Tensor2D, ids), up2)))(table);
    assert.ok(maxAbsDiff(g1.dataSync(), g2.dataSync()) < 1e-5);
    assert.ok(Math.abs(g2.dataSync()[3]) > 0, 'row 1 received gradient');
  });

  it('gradients of the whole model agree across custom gradients and attention forms within 1e-4', () => {
    const model = BertModel.fromWeights(config, randomWeights(15), NUM_LABELS, { dropout: 0 });
    const inputs = toInputs([treeSentence([1, 5, 9, 11, 20, 21, 3, 2]), treeSentence([3, 3, 7, 8, 9, 10, 11, 12])], 8);
    const positions = tf.tensor1d([1, 4, 9, 9], 'int32');
    const labels = tf.oneHot(tf.tensor1d([2, 0, 3, 1], 'int32'), 6);
    const subset = tf.tensor1d([0, 5, 7, 9, 11, 30], 'int32');
    const loss = () => {
      const h = model.encode(inputs, true);
      const mlm = tf.losses.softmaxCrossEntropy(labels, model.mlmLogits(h, positions, true, subset));
      const tok = tf.mean(tf.square(model.tokenLogits(inputs, true)));
      return tf.add(mlm, tok) as tf.Scalar;
    };
    const vars = [...model.variables.values()];
    const run = (opts: Partial<KernelOptions>) => {
      model.kernels = { ...model.kernels, ...opts };
      return tf.variableGrads(loss, vars);
    };
    try {
      const plain = run({ customGradients: 'off', attention: 'loop' });
      const custom = run({ customGradients: 'on', attention: 'loop' });
      const batched = run({ customGradients: 'on', attention: 'batched' });
      assert.equal(Object.keys(plain.grads).length, vars.length);
      let largest = 0;
      for (const name of Object.keys(plain.grads)) {
        const p = plain.grads[name].dataSync();
        largest = Math.max(largest, ...Array.from(p, Math.abs));
        assert.ok(maxAbsDiff(p, custom.grads[name].dataSync()) < 1e-4, `custom ${name}`);
        assert.ok(maxAbsDiff(p, batched.grads[name].dataSync()) < 1e-4, `batched ${name}`);
      }
      assert.ok(largest > 1e-2, 'gradients are not all ~0');
      // Word-embedding rows of ids never used get no gradient.
      const wordGrad = plain.grads[model.variables.get('bert.embeddings.word_embeddings.weight')!.name].arraySync() as number[][];
      assert.ok(wordGrad[39].every((v) => v === 0));
      assert.ok(wordGrad[20].some((v) => v !== 0));
    } finally {
      model.dispose();
    }
  });
});
