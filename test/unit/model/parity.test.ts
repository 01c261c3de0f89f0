/**
 * Numeric parity of the tfjs forward pass against an independent float64 numpy reference
 * (scripts/parity/make_fixtures.py) on a tiny random BERT with K-BERT inputs: soft positions and a
 * visibility matrix from sentence trees with injected branches. The weights go through checkpoint
 * import, as a user's Hugging Face checkpoint would.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import { BertModel, type KernelOptions } from '../../../src/model/bert.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { MASK_NEGATIVE, writeAdditiveMask } from '../../../src/domain/index.ts';
import { batchOf, importParityCheckpoint, loadParityFixture, measureParity, relativeError, runFixtureBatch } from '../../helpers/parity-fixture.ts';

const TOLERANCE = 1e-4;
const fixture = loadParityFixture();
const { inputs, expected } = fixture;

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
  const imported = await importParityCheckpoint();
  assert.equal(imported.configSource, 'config.json');
  assert.equal(imported.numLabels, 3);
  assert.deepEqual(imported.unused.map((u) => u.name).sort(), ['bert.pooler.dense.bias', 'bert.pooler.dense.weight']);

  const results: string[] = [];
  const check = async (label: string, kernels: Partial<KernelOptions>): Promise<void> => {
    const measured = await measureParity(fixture, imported, kernels);
    for (const line of measured.lines) {
      results.push(`${label} ${line.label}: hidden ${line.hidden.toExponential(2)}, logits ${line.logits.toExponential(2)}`);
      assert.ok(line.hidden <= TOLERANCE, `${label} ${line.label} hidden relative error ${line.hidden}`);
      assert.ok(line.logits <= TOLERANCE, `${label} ${line.label} logits relative error ${line.logits}`);
    }
    assert.equal(measured.lines.length, 2 * inputs.sentences.length);
    // The fixture is sensitive to what it tests: ignoring the visibility matrix or the soft positions is far off.
    const model = BertModel.fromWeights(imported.config, imported.weights, imported.numLabels);
    try {
      const injected = inputs.sentences[0];
      const noMask = await runFixtureBatch(model, batchOf([injected], { mask: 'none' }), 1);
      const hardPositions = await runFixtureBatch(model, batchOf([injected], { positions: 'hard' }), 1);
      assert.ok(relativeError(noMask.logits, expected.sentences[0].logits) > 1e-2, 'mask ignored should not match');
      assert.ok(relativeError(hardPositions.logits, expected.sentences[0].logits) > 1e-2, 'hard positions should not match');
    } finally {
      model.dispose();
    }
  };

  await selectBackend('wasm', () => undefined);
  for (const attention of ['loop', 'batched'] as const) await check(`wasm/${attention}`, { attention });
  await import('@tensorflow/tfjs-backend-cpu');
  assert.ok(await tf.setBackend('cpu'));
  await check('cpu/loop', { attention: 'loop' });
  for (const line of results) t.diagnostic(line);
});
