import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeAdditiveMask, MASK_NEGATIVE } from '../../../src/domain/index.ts';
import { BatchBuffers, planBatches } from '../../../src/model/onnx/batching.ts';
import { sentenceTree } from './onnx-fixtures.ts';

test('batches group similar lengths, pad only to their own longest sentence and respect both caps', () => {
  const lengths = [5, 40, 6, 41, 7, 100, 5, 39];
  const batches = planBatches(lengths, { maxBatchTokens: 130, maxBatchSize: 3 });
  assert.deepEqual(
    batches.map((b) => [b.indices, b.seqLen]),
    [
      [[0, 6, 2], 6],
      [[4, 7, 1], 40],
      [[3], 41],
      [[5], 100],
    ],
  );
  for (const b of batches) {
    assert.equal(b.seqLen, Math.max(...b.indices.map((i) => lengths[i])));
    assert.ok(b.indices.length <= 3);
    assert.ok(b.indices.length === 1 || b.indices.length * b.seqLen <= 130);
  }
  // Every sentence exactly once.
  assert.deepEqual(batches.flatMap((b) => b.indices).sort((a, b) => a - b), lengths.map((_, i) => i));
});

test('a sentence longer than the token cap runs alone; limits must be positive', () => {
  assert.deepEqual(planBatches([300, 2], { maxBatchTokens: 64, maxBatchSize: 8 }), [
    { indices: [1], seqLen: 2 },
    { indices: [0], seqLen: 300 },
  ]);
  assert.deepEqual(planBatches([], { maxBatchTokens: 64, maxBatchSize: 8 }), []);
  assert.throws(() => planBatches([1], { maxBatchTokens: 0, maxBatchSize: 8 }), RangeError);
});

test('batch buffers write int64 ids (negative-safe), padding, and the additive mask per sentence', () => {
  const a = sentenceTree([7, 8, 9], [{ start: 0, end: 1, branches: [[50, 51]] }], { cls: 2 });
  const b = sentenceTree([3], []);
  const buffers = new BatchBuffers();
  const filled = buffers.fill([a, b], 6, writeAdditiveMask, 0);
  assert.deepEqual([...filled.ids], [2n, 7n, 50n, 51n, 8n, 9n, 3n, 0n, 0n, 0n, 0n, 0n]);
  assert.deepEqual([...filled.positions], [0n, 1n, 2n, 3n, 2n, 3n, 0n, 0n, 0n, 0n, 0n, 0n]);
  assert.equal(filled.mask.length, 2 * 6 * 6);
  // Row 1 (the name 7) sees its branch (cols 2, 3); row 4 (8) does not.
  assert.deepEqual([...filled.mask.subarray(6, 12)], [0, 0, 0, 0, 0, 0]);
  assert.deepEqual([...filled.mask.subarray(24, 30)], [0, 0, MASK_NEGATIVE, MASK_NEGATIVE, 0, 0]);
  // Second sentence: one real token; its padding columns are masked.
  assert.deepEqual([...filled.mask.subarray(36, 42)], [0, MASK_NEGATIVE, MASK_NEGATIVE, MASK_NEGATIVE, MASK_NEGATIVE, MASK_NEGATIVE]);
  // A smaller batch reuses the buffers and returns exact-size views.
  const again = buffers.fill([b], 1, writeAdditiveMask, 0);
  assert.equal(again.ids.length, 1);
  assert.equal(again.ids.buffer, filled.ids.buffer);
  const neg = { ...b, tokenIds: Int32Array.of(-3) };
  assert.equal(buffers.fill([neg], 1, writeAdditiveMask, 0).ids[0], -3n);
});
