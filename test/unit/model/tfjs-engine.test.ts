import assert from 'node:assert/strict';
import { before, describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { writeAdditiveMask, type InjectedSentence } from '../../../src/domain/index.ts';
import { ModelError } from '../../../src/errors/index.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertModel } from '../../../src/model/bert.ts';
import { TfjsEngine } from '../../../src/model/tfjs-engine.ts';
import type { ArtifactConfig, BertConfig, ModelArtifact } from '../../../src/model/types.ts';
import { mulberry32 } from '../../../src/domain/random.ts';

const config: BertConfig = { vocabSize: 50, hiddenSize: 16, numLayers: 2, numHeads: 2, intermediateSize: 32, maxPositions: 64, typeVocabSize: 2, layerNormEps: 1e-12 };
const LABELS = ['O', 'B-X', 'I-X'];

async function artifact(labels = LABELS): Promise<ModelArtifact> {
  const model = BertModel.init(config, { seed: 4, numLabels: labels.length });
  const weights = await model.toWeightMap();
  model.dispose();
  const cfg: ArtifactConfig = {
    name: 'test-model',
    model: config,
    labels,
    vocabSha256: 'x',
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 64, enabled: true },
    createdAt: '2026-01-01T00:00:00Z',
  };
  return { dir: '/nonexistent', config: cfg, weights, version: { name: 'test-model', hash: '000000000000' } };
}

/** A sentence of n tokens; with a branch of two tokens after token 1 when n >= 5. */
function sentence(n: number, seed: number): InjectedSentence {
  const rnd = mulberry32(seed);
  const branch = new Int32Array(n).fill(-1);
  const anchor = new Int32Array(n).fill(-1);
  const soft = Int32Array.from({ length: n }, (_, i) => i);
  if (n >= 5) {
    branch[2] = 2;
    branch[3] = 2;
    anchor[1] = anchor[2] = anchor[3] = 1;
    soft[2] = 2;
    soft[3] = 3;
    for (let i = 4; i < n; i++) soft[i] = i - 2;
  }
  return {
    tokenIds: Int32Array.from({ length: n }, () => 1 + Math.floor(rnd() * 48)),
    softPositions: soft,
    segmentIds: new Int32Array(n),
    branch,
    anchor,
    charStart: new Int32Array(n),
    charEnd: new Int32Array(n),
  };
}

/** Logits for one sentence run alone at its own length, straight through BertModel. */
function direct(model: BertModel, s: InjectedSentence): Float32Array {
  const T = s.tokenIds.length;
  const mask = new Float32Array(T * T);
  writeAdditiveMask(s, mask, 0, T);
  return tf.tidy(() =>
    model
      .tokenLogits({
        tokenIds: tf.tensor2d(s.tokenIds, [1, T], 'int32'),
        softPositions: tf.tensor2d(s.softPositions, [1, T], 'int32'),
        segmentIds: tf.tensor2d(s.segmentIds, [1, T], 'int32'),
        mask: tf.tensor3d(mask, [1, T, T]),
      })
      .dataSync() as Float32Array,
  );
}

before(async () => {
  await selectBackend('wasm', () => {});
});

describe('TfjsEngine', () => {
  it('returns per-sentence logits equal to the unbatched forward pass, whatever the bucketing', async () => {
    const a = await artifact();
    const engine = await TfjsEngine.load(a, { maxBatchTokens: 40, maxBatchSize: 3 });
    assert.equal(engine.name, 'tfjs-wasm');
    assert.deepEqual(engine.labels, LABELS);
    const sentences = [3, 12, 5, 7, 20, 1, 9, 9, 30].map((n, i) => sentence(n, i + 1));
    const out = await engine.classify(sentences);
    const reference = BertModel.fromWeights(config, a.weights);
    out.forEach((logits, i) => {
      assert.equal(logits.length, sentences[i].tokenIds.length * LABELS.length);
      const want = direct(reference, sentences[i]);
      let diff = 0;
      for (let k = 0; k < want.length; k++) diff = Math.max(diff, Math.abs(want[k] - logits[k]));
      assert.ok(diff < 1e-4, `sentence ${i}: ${diff}`);
    });
    assert.deepEqual(await engine.classify([]), []);
    reference.dispose();
    await engine.dispose();
  });

  it('leaves no tensor behind: tf.memory().numTensors is the same before and after 100 classify calls', async () => {
    const engine = await TfjsEngine.load(await artifact());
    const sentences = [4, 8, 15, 6].map((n, i) => sentence(n, 10 + i));
    const before = tf.memory().numTensors;
    for (let i = 0; i < 100; i++) await engine.classify(sentences);
    assert.equal(tf.memory().numTensors, before);
    const beforeDispose = tf.memory().numTensors;
    await engine.dispose();
    assert.ok(tf.memory().numTensors < beforeDispose);
    await assert.rejects(engine.classify(sentences), ModelError);
  });

  it('refuses bad input with a clear error and a backbone without labels', async () => {
    const engine = await TfjsEngine.load(await artifact());
    const bad = sentence(4, 1);
    bad.tokenIds[2] = 999;
    await assert.rejects(engine.classify([sentence(3, 2), bad]), /sentence 1: token id 999 at 2 is outside the vocabulary/);
    const far = sentence(4, 1);
    far.softPositions[3] = 64;
    await assert.rejects(engine.classify([far]), /soft position 64/);
    const ragged = sentence(4, 1);
    ragged.softPositions = new Int32Array(3);
    await assert.rejects(engine.classify([ragged]), /differ in length/);
    await assert.rejects(engine.classify([sentence(0, 1)]), /has no tokens/);
    await engine.dispose();
    await assert.rejects(TfjsEngine.load(await artifact([])), /no token-classification head/);
  });
});
