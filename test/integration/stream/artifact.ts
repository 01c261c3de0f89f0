/**
 * A small random-weight model artifact, for exercising the stage before (or without) the trained
 * medical model: real artifact format, manifest and engines, meaningless predictions.
 */
import { writeArtifact } from '../../../src/model/artifact.ts';
import { selectBackend } from '../../../src/model/backend.ts';
import { BertModel } from '../../../src/model/bert.ts';
import { SHIPPED_VOCAB_SHA256 } from '../../../src/model/tokenizer.ts';
import type { ArtifactConfig, BertConfig } from '../../../src/model/types.ts';

export const MEDICAL_LABELS = [
  'O',
  'B-BodyPart',
  'I-BodyPart',
  'B-Symptom',
  'I-Symptom',
  'B-Disease',
  'I-Disease',
  'B-Examine',
  'I-Examine',
  'B-Cure',
  'I-Cure',
];

export const TINY_BERT: BertConfig = {
  vocabSize: 21128,
  hiddenSize: 32,
  numLayers: 1,
  numHeads: 2,
  intermediateSize: 64,
  maxPositions: 512,
  typeVocabSize: 2,
  layerNormEps: 1e-12,
};

/** Writes a random-weight token classifier to `dir`; different seeds give different versions. */
export async function writeRandomArtifact(dir: string, options: { name?: string; seed?: number; config?: BertConfig; maxLength?: number } = {}) {
  await selectBackend('cpu', () => undefined);
  const config = options.config ?? TINY_BERT;
  const model = BertModel.init(config, { numLabels: MEDICAL_LABELS.length, seed: options.seed ?? 1 });
  const weights = await model.toWeightMap();
  model.dispose();
  const artifactConfig: ArtifactConfig = {
    name: options.name ?? 'rmbert-random',
    model: config,
    labels: MEDICAL_LABELS,
    vocabSha256: SHIPPED_VOCAB_SHA256,
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: options.maxLength ?? 128, enabled: true },
    training: { note: 'random weights, for tests' },
    createdAt: new Date(0).toISOString(),
  };
  return writeArtifact(dir, artifactConfig, weights, { dtype: 'F32', overwrite: true });
}
