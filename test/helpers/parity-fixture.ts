/**
 * The numeric-parity fixture of scripts/parity/make_fixtures.py (a tiny random BERT run in float64 numpy
 * on K-BERT inputs), shared by the parity test and the model-forward benchmark so both measure the same
 * thing the same way.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { BertModel, type KernelOptions } from '../../src/model/bert.ts';
import { importCheckpointFile, type ImportedCheckpoint } from '../../src/model/checkpoint-import.ts';
import { writeAdditiveMask } from '../../src/domain/index.ts';
import { REPO_ROOT } from './paths.ts';

export const PARITY_FIXTURES = path.join(REPO_ROOT, 'test', 'fixtures', 'parity');

export interface FixtureSentence {
  name: string;
  tokenIds: number[];
  softPositions: number[];
  segmentIds: number[];
  branch: number[];
  anchor: number[];
  visible: number[][];
}
export interface ExpectedSentence {
  name: string;
  hidden: number[][];
  logits: number[][];
}
export interface ParityFixture {
  inputs: { maskNegative: number; sentences: FixtureSentence[] };
  expected: { sentences: ExpectedSentence[] };
}

export function loadParityFixture(): ParityFixture {
  const read = (name: string): unknown => JSON.parse(readFileSync(path.join(PARITY_FIXTURES, name), 'utf8'));
  return { inputs: read('inputs.json') as ParityFixture['inputs'], expected: read('expected.json') as ParityFixture['expected'] };
}

export function importParityCheckpoint(): Promise<ImportedCheckpoint> {
  return importCheckpointFile(path.join(PARITY_FIXTURES, 'weights.safetensors'));
}

/** max |a - b| / max |b| over the first `rows` rows of a [*, width] result against the reference. */
export function relativeError(actual: Float32Array, reference: number[][], rows = reference.length, stride = reference[0].length): number {
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

export interface FixtureBatch {
  T: number;
  tokenIds: Int32Array;
  softPositions: Int32Array;
  segmentIds: Int32Array;
  mask: Float32Array;
}

/** Pads sentences to the longest and builds the additive mask with the domain's writeAdditiveMask. */
export function batchOf(sentences: FixtureSentence[], override?: { mask?: 'none'; positions?: 'hard' }): FixtureBatch {
  const T = Math.max(...sentences.map((s) => s.tokenIds.length));
  const B = sentences.length;
  const batch: FixtureBatch = {
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

export async function runFixtureBatch(model: BertModel, batch: FixtureBatch, B: number): Promise<{ hidden: Float32Array; logits: Float32Array }> {
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

export interface ParityMeasurement {
  /** One line per sentence and per padded batch: hidden and logits relative errors. */
  lines: { label: string; hidden: number; logits: number }[];
  maxRelError: number;
}

/**
 * Runs every fixture sentence alone and all of them in one padded batch on the current tfjs backend and
 * compares hidden states and logits with the float64 reference.
 */
export async function measureParity(fixture: ParityFixture, imported: ImportedCheckpoint, kernels: Partial<KernelOptions> = {}): Promise<ParityMeasurement> {
  const model = BertModel.fromWeights(imported.config, imported.weights, imported.numLabels);
  model.kernels = { ...model.kernels, ...kernels };
  const lines: ParityMeasurement['lines'] = [];
  try {
    const H = imported.config.hiddenSize;
    const L = imported.numLabels;
    const { sentences } = fixture.inputs;
    for (const [k, s] of sentences.entries()) {
      const out = await runFixtureBatch(model, batchOf([s]), 1);
      lines.push({ label: s.name, hidden: relativeError(out.hidden, fixture.expected.sentences[k].hidden), logits: relativeError(out.logits, fixture.expected.sentences[k].logits) });
    }
    // All in one padded batch: padding must not change the real positions.
    const batch = batchOf(sentences);
    const out = await runFixtureBatch(model, batch, sentences.length);
    for (const [k, s] of sentences.entries()) {
      const n = s.tokenIds.length;
      lines.push({
        label: `batched ${s.name}`,
        hidden: relativeError(out.hidden.subarray(k * batch.T * H), fixture.expected.sentences[k].hidden, n, H),
        logits: relativeError(out.logits.subarray(k * batch.T * L), fixture.expected.sentences[k].logits, n, L),
      });
    }
  } finally {
    model.dispose();
  }
  return { lines, maxRelError: Math.max(...lines.map((l) => Math.max(l.hidden, l.logits))) };
}
