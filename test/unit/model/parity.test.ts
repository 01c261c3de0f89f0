/**
 * Numeric parity of the tfjs forward pass against an independent float64 numpy reference
 * (scripts/parity/make_fixtures.py) on a tiny random BERT with K-BERT inputs: soft positions and a
 * visibility matrix from sentence trees with injected branches. The weights go through checkpoint
 * import, as a user's Hugging Face checkpoint would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BertModel, configureKernels } from '../../../src/model/bert.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { importCheckpointFile } from '../../../src/model/checkpoint-import.ts';
import { MASK_NEGATIVE, writeAdditiveMask } from '../../../src/domain/index.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'parity');
const TOLERANCE = 1e-4;

interface FixtureSentence {
  name: string;
  tokenIds: number[];
  softPositions: number[];
  segmentIds: number[];
  branch: number[];
  anchor: number[];
  visible: number[][];
}
interface ExpectedSentence {
  name: string;
  hidden: number[][];
  logits: number[][];
}

const inputs = JSON.parse(readFileSync(path.join(FIXTURES, 'inputs.json'), 'utf8')) as { maskNegative: number; sentences: FixtureSentence[] };
const expected = JSON.parse(readFileSync(path.join(FIXTURES, 'expected.json'), 'utf8')) as { sentences: ExpectedSentence[] };

/** max |a - b| / max |b| over the first `rows` rows of a [*, width] result against the reference. */
function relativeError(actual: Float32Array, reference: number[][], rows = reference.length, stride = reference[0].length): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < rows; i++) {
    for (let j = 0; j < reference[i].length; j++) {
      maxDiff = Math.max(maxDiff, Math.abs(actual[i * stride + j] - reference[i][j]));
      maxRef = Math.max(maxRef, Math.abs(reference[i][j]));
    }
  }
  return maxDiff / maxRef;
}

interface Batch {
  T: number;
  tokenIds: Int32Array;
  softPositions: Int32Array;
  segmentIds: Int32Array;
  mask: Float32Array;
}

/** Pads sentences to the longest and builds the additive mask with the domain's writeAdditiveMask. */
function batchOf(sentences: FixtureSentence[], override?: { mask?: 'none'; positions?: 'hard' }): Batch {
  const T = Math.max(...sentences.map((s) => s.tokenIds.length));
  const B = sentences.length;
  const batch: Batch = {
    T,
    tokenIds: new Int32Array(B * T),
    softPositions: new Int32Array(B * T),
    segmentIds: new Int32Array(B * T),
    mask: new Float32Array(B * T * T),
  };
  sentences.forEach((s, b) => {
    batch.tokenIds.set(s.tokenIds, b * T);
    batch.softPositions.set(override?.positions === 'hard' ? s.tokenIds.map((_, i) => i) : s.softPositions, b * T);
    batch.segmentIds.set(s.segmentIds, b * T);
    const compact = { branch: Int32Array.from(s.branch), anchor: Int32Array.from(s.anchor) };
    if (override?.mask === 'none') compact.branch.fill(-1);
    writeAdditiveMask(compact, batch.mask, b * T * T, T);
  });
  return batch;
}

async function run(model: BertModel, batch: Batch, B: number): Promise<{ hidden: Float32Array; logits: Float32Array }> {
  const T = batch.T;
  const tensors = {
    tokenIds: tf.tensor2d(batch.tokenIds, [B, T], 'int32'),
    softPositions: tf.tensor2d(batch.softPositions, [B, T], 'int32'),
    segmentIds: tf.tensor2d(batch.segmentIds, [B, T], 'int32'),
    mask: tf.tensor3d(batch.mask, [B, T, T], 'float32'),
  };
  const hiddenT = model.encode(tensors);
  const logitsT = model.tokenLogits(tensors);
  const [hidden, logits] = await Promise.all([hiddenT.data() as Promise<Float32Array>, logitsT.data() as Promise<Float32Array>]);
  tf.dispose([hiddenT, logitsT, tensors.tokenIds, tensors.softPositions, tensors.segmentIds, tensors.mask]);
  return { hidden, logits };
}

test('the fixture visibility matrices are the domain rule (writeAdditiveMask)', () => {
  for (const s of inputs.sentences) {
    const T = s.tokenIds.length;
    const mask = new Float32Array(T * T);
    writeAdditiveMask({ branch: Int32Array.from(s.branch), anchor: Int32Array.from(s.anchor) }, mask, 0, T);
    for (let i = 0; i < T; i++) {
      for (let j = 0; j < T; j++) assert.equal(mask[i * T + j], s.visible[i][j] ? 0 : MASK_NEGATIVE, `${s.name} [${i}, ${j}]`);
    }
  }
  assert.equal(inputs.maskNegative, MASK_NEGATIVE);
});

test('tfjs forward pass matches the float64 reference within 1e-4 (imported HF checkpoint, soft positions, visibility)', async (t) => {
  const imported = await importCheckpointFile(path.join(FIXTURES, 'weights.safetensors'));
  assert.equal(imported.configSource, 'config.json');
  assert.equal(imported.numLabels, 3);
  assert.deepEqual(imported.unused.map((u) => u.name).sort(), ['bert.pooler.dense.bias', 'bert.pooler.dense.weight']);

  const results: string[] = [];
  const check = async (label: string): Promise<void> => {
    const model = BertModel.fromWeights(imported.config, imported.weights, imported.numLabels);
    try {
      const H = imported.config.hiddenSize;
      // One sentence at a time.
      for (const [k, s] of inputs.sentences.entries()) {
        const out = await run(model, batchOf([s]), 1);
        const eh = relativeError(out.hidden, expected.sentences[k].hidden);
        const el = relativeError(out.logits, expected.sentences[k].logits);
        results.push(`${label} ${s.name}: hidden ${eh.toExponential(2)}, logits ${el.toExponential(2)}`);
        assert.ok(eh <= TOLERANCE, `${label} ${s.name} hidden relative error ${eh}`);
        assert.ok(el <= TOLERANCE, `${label} ${s.name} logits relative error ${el}`);
      }
      // All three in one padded batch: padding must not change the real positions.
      const batch = batchOf(inputs.sentences);
      const out = await run(model, batch, inputs.sentences.length);
      for (const [k, s] of inputs.sentences.entries()) {
        const n = s.tokenIds.length;
        const eh = relativeError(out.hidden.subarray(k * batch.T * H), expected.sentences[k].hidden, n, H);
        const el = relativeError(out.logits.subarray(k * batch.T * 3), expected.sentences[k].logits, n, 3);
        assert.ok(eh <= TOLERANCE && el <= TOLERANCE, `${label} batched ${s.name}: hidden ${eh}, logits ${el}`);
      }
      // The fixture is sensitive to what it tests: ignoring the visibility matrix or the soft positions is far off.
      const injected = inputs.sentences[0];
      const noMask = await run(model, batchOf([injected], { mask: 'none' }), 1);
      const hardPositions = await run(model, batchOf([injected], { positions: 'hard' }), 1);
      assert.ok(relativeError(noMask.logits, expected.sentences[0].logits) > 1e-2, 'mask ignored should not match');
      assert.ok(relativeError(hardPositions.logits, expected.sentences[0].logits) > 1e-2, 'hard positions should not match');
    } finally {
      model.dispose();
    }
  };

  await selectBackend('wasm', () => undefined);
  for (const attention of ['loop', 'batched'] as const) {
    configureKernels({ attention });
    await check(`wasm/${attention}`);
  }
  await import('@tensorflow/tfjs-backend-cpu');
  assert.ok(await tf.setBackend('cpu'));
  configureKernels({ attention: 'loop' });
  await check('cpu/loop');
  for (const line of results) t.diagnostic(line);
});
