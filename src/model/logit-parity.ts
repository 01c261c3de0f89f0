/**
 * Logit parity of an exported model: the PyTorch trainer (python/rmbert_train/finetune.py) writes the
 * inputs of a few injected examples and its logits (parity.json); the TensorFlow.js forward pass of the
 * imported weights must give the same logits. `rmbert import --parity` refuses an artifact that does not.
 */
import * as tf from '@tensorflow/tfjs-core';
import { MASK_NEGATIVE } from '../domain/index.ts';
import { ModelError } from '../errors/index.ts';
import { BertModel } from './bert.ts';
import type { BertConfig, WeightMap } from './types.ts';

export interface ParityExample {
  tokenIds: number[];
  softPositions: number[];
  segmentIds: number[];
  /** [L][L], 1 visible, 0 not. */
  visible: number[][];
  /** [L][numLabels] logits of the exporting framework. */
  logits: number[][];
}

export interface ParityReport {
  examples: number;
  tokens: number;
  /** Largest |ours - theirs| over every logit. */
  maxAbsError: number;
  /** maxAbsError / the largest |logit|. */
  relativeError: number;
}

export function parseParityFile(raw: unknown, source: string): ParityExample[] {
  const examples = (raw as { examples?: unknown })?.examples;
  if (!Array.isArray(examples) || examples.length === 0) throw new ModelError(`${source}: expected { examples: [...] } with at least one example`);
  examples.forEach((e: ParityExample, i) => {
    const L = e?.tokenIds?.length;
    const ok =
      L > 0 &&
      e.softPositions?.length === L &&
      e.segmentIds?.length === L &&
      e.visible?.length === L &&
      e.visible.every((row) => row.length === L) &&
      e.logits?.length === L;
    if (!ok) throw new ModelError(`${source}: example ${i} needs tokenIds, softPositions, segmentIds, visible [L][L] and logits [L][labels] of one length`);
  });
  return examples as ParityExample[];
}

/** Runs every example through the tfjs model built from `weights` and compares the logits. */
export async function measureLogitParity(config: BertConfig, weights: WeightMap, numLabels: number, examples: readonly ParityExample[]): Promise<ParityReport> {
  const model = BertModel.fromWeights(config, weights, numLabels, { mlmHead: false });
  let maxAbs = 0;
  let maxRef = 0;
  let tokens = 0;
  try {
    for (const e of examples) {
      const L = e.tokenIds.length;
      if (e.logits[0].length !== numLabels) throw new ModelError(`parity example has ${e.logits[0].length} logits per token, the model ${numLabels}`);
      const mask = new Float32Array(L * L);
      for (let i = 0; i < L; i++) for (let j = 0; j < L; j++) mask[i * L + j] = e.visible[i][j] ? 0 : MASK_NEGATIVE;
      const out = tf.tidy(() =>
        model.tokenLogits({
          tokenIds: tf.tensor2d(e.tokenIds, [1, L], 'int32'),
          softPositions: tf.tensor2d(e.softPositions, [1, L], 'int32'),
          segmentIds: tf.tensor2d(e.segmentIds, [1, L], 'int32'),
          mask: tf.tensor3d(mask, [1, L, L], 'float32'),
        }),
      );
      const ours = (await out.data()) as Float32Array;
      out.dispose();
      for (let t = 0; t < L; t++) {
        for (let k = 0; k < numLabels; k++) {
          const theirs = e.logits[t][k];
          maxAbs = Math.max(maxAbs, Math.abs(ours[t * numLabels + k] - theirs));
          maxRef = Math.max(maxRef, Math.abs(theirs));
        }
      }
      tokens += L;
    }
  } finally {
    model.dispose();
  }
  return { examples: examples.length, tokens, maxAbsError: maxAbs, relativeError: maxAbs / Math.max(maxRef, 1e-12) };
}
