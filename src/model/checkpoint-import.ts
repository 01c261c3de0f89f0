/**
 * Import of standard BERT checkpoints in safetensors format onto the weight contract of types.ts.
 *
 * Accepted names: Hugging Face BertModel (`embeddings.*`, `encoder.*`, no prefix), BertForTokenClassification
 * / BertForMaskedLM / BertForPreTraining (`bert.*`, `classifier.*`, `cls.*`), and LayerNorm parameters
 * named `gamma`/`beta` as in checkpoints converted from the original TensorFlow release. The pooler,
 * the next-sentence head, the tied MLM decoder weight and buffers such as `position_ids` are not part of
 * the model and are reported as unused.
 *
 * The BertConfig comes from, in order: the caller, a Hugging Face config.json beside the file, or the
 * tensor shapes (the number of heads cannot be seen in shapes: BERT's 64-wide heads are assumed and the
 * report says so).
 */
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ModelError, SchemaError } from '../errors/index.ts';
import { MLM_HEAD_PREFIX, bertConfigProblems, expectedWeightShapes } from './artifact.ts';
import { CRF_WEIGHT_NAMES } from './decode.ts';
import { decodeSafetensorsTensor, readSafetensorsHeader } from './safetensors.ts';
import type { BertConfig, WeightMap } from './types.ts';

export interface ImportedCheckpoint {
  config: BertConfig;
  /** Where the config came from. */
  configSource: 'given' | 'config.json' | 'inferred';
  /** Rows of classifier.weight; 0 when the checkpoint has no token-classification head. */
  numLabels: number;
  hasMlmHead: boolean;
  /** The checkpoint carries a CRF output layer (crf.*), imported with the classifier. */
  hasCrf: boolean;
  /** Weights under the contract's names. */
  weights: WeightMap;
  /** Checkpoint name -> contract name, for every tensor taken. */
  mapped: Map<string, string>;
  /** Contract weights of optional heads the checkpoint lacks (e.g. part of an MLM head). */
  missing: string[];
  /** Checkpoint tensors not used, with why. */
  unused: Array<{ name: string; reason: string }>;
  /** Facts the user should know (assumed values, activation differences). */
  notes: string[];
}

export interface ImportOptions {
  /** Use this config instead of config.json or inference. */
  config?: BertConfig;
  /** A parsed Hugging Face config.json (used when `config` is absent). */
  hfConfig?: Record<string, unknown>;
  /** Leave the classification head out even if the checkpoint has one. */
  dropClassifier?: boolean;
  /** Leave the MLM head out even if the checkpoint has one. */
  dropMlmHead?: boolean;
}

const LAYER_RE = /^bert\.encoder\.layer\.(\d+)\./;

/** The contract name for a checkpoint tensor name, or a reason it is not used. */
export function mapCheckpointName(name: string): { to: string } | { reason: string } {
  let n = name;
  // TF-converted checkpoints call LayerNorm's scale and shift gamma and beta.
  n = n.replace(/(LayerNorm)\.gamma$/, '$1.weight').replace(/(LayerNorm)\.beta$/, '$1.bias');
  if (n.startsWith('embeddings.') || n.startsWith('encoder.') || n.startsWith('pooler.')) n = `bert.${n}`;
  if (n.startsWith('bert.pooler.')) return { reason: 'pooler (not used for token classification)' };
  if (n.endsWith('.position_ids') || n.endsWith('.token_type_ids')) return { reason: 'buffer, not a weight' };
  if (n.startsWith('cls.seq_relationship.')) return { reason: 'next-sentence prediction head' };
  if (n === 'cls.predictions.decoder.weight') return { reason: 'MLM decoder, tied to the word embeddings' };
  if (n === 'cls.predictions.decoder.bias') return { to: 'cls.predictions.bias' };
  if (n.startsWith('bert.') || n.startsWith('classifier.') || n.startsWith(MLM_HEAD_PREFIX)) return { to: n };
  if ((CRF_WEIGHT_NAMES as readonly string[]).includes(n)) return { to: n };
  return { reason: 'not a BERT weight' };
}

function positiveInt(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isSafeInteger(v) && v > 0 ? v : undefined;
}

/** BertConfig from a Hugging Face config.json object; lists what is missing or unsupported. */
export function configFromHuggingFace(hf: Record<string, unknown>, notes: string[] = []): BertConfig {
  const config: BertConfig = {
    vocabSize: positiveInt(hf.vocab_size) ?? NaN,
    hiddenSize: positiveInt(hf.hidden_size) ?? NaN,
    numLayers: positiveInt(hf.num_hidden_layers) ?? NaN,
    numHeads: positiveInt(hf.num_attention_heads) ?? NaN,
    intermediateSize: positiveInt(hf.intermediate_size) ?? NaN,
    maxPositions: positiveInt(hf.max_position_embeddings) ?? NaN,
    typeVocabSize: positiveInt(hf.type_vocab_size) ?? 2,
    layerNormEps: typeof hf.layer_norm_eps === 'number' && hf.layer_norm_eps > 0 ? hf.layer_norm_eps : 1e-12,
  };
  const problems = bertConfigProblems(config);
  if (problems.length > 0) throw new ModelError(`config.json is not a usable BERT config:\n  - ${problems.join('\n  - ')}`);
  if (hf.hidden_act !== undefined && hf.hidden_act !== 'gelu') {
    notes.push(`config.json has hidden_act "${String(hf.hidden_act)}"; this model computes exact (erf) GELU, so outputs will differ slightly`);
  }
  if (hf.position_embedding_type !== undefined && hf.position_embedding_type !== 'absolute') {
    throw new ModelError(`config.json has position_embedding_type "${String(hf.position_embedding_type)}"; only absolute positions are supported`);
  }
  return config;
}

/** BertConfig from the tensor shapes (contract names); the head count and eps are BERT's conventions. */
export function inferConfig(shapes: ReadonlyMap<string, readonly number[]>, notes: string[] = []): BertConfig {
  const need = (name: string): readonly number[] => {
    const s = shapes.get(name);
    if (!s) throw new ModelError(`cannot infer the config: the checkpoint has no ${name} (and no config.json was given)`);
    return s;
  };
  const word = need('bert.embeddings.word_embeddings.weight');
  const hidden = word[1];
  let numLayers = 0;
  for (const name of shapes.keys()) {
    const m = LAYER_RE.exec(name);
    if (m) numLayers = Math.max(numLayers, Number(m[1]) + 1);
  }
  if (numLayers === 0) throw new ModelError('cannot infer the config: the checkpoint has no encoder layers');
  const numHeads = hidden % 64 === 0 ? hidden / 64 : 0;
  if (numHeads === 0) {
    throw new ModelError(`cannot infer the number of attention heads for hidden size ${hidden}; put the checkpoint's config.json beside it`);
  }
  notes.push(`no config.json: assumed ${numHeads} attention heads (64 wide, as BERT) and LayerNorm eps 1e-12`);
  return {
    vocabSize: word[0],
    hiddenSize: hidden,
    numLayers,
    numHeads,
    intermediateSize: need('bert.encoder.layer.0.intermediate.dense.weight')[0],
    maxPositions: need('bert.embeddings.position_embeddings.weight')[0],
    typeVocabSize: need('bert.embeddings.token_type_embeddings.weight')[0],
    layerNormEps: 1e-12,
  };
}

/**
 * Maps a safetensors checkpoint onto the contract. Throws a ModelError listing every missing encoder
 * weight or wrong shape; optional heads that are incomplete are left out and reported.
 */
export function importCheckpoint(buf: Uint8Array, options: ImportOptions = {}): ImportedCheckpoint {
  let header;
  try {
    header = readSafetensorsHeader(buf);
  } catch (error) {
    if (error instanceof SchemaError) throw new ModelError(`not a readable safetensors checkpoint: ${error.message}`, { cause: error });
    throw error;
  }
  const notes: string[] = [];
  const unused: Array<{ name: string; reason: string }> = [];
  const mapped = new Map<string, string>();
  const shapes = new Map<string, number[]>();
  for (const [name, entry] of header.entries) {
    const m = mapCheckpointName(name);
    if ('reason' in m) {
      unused.push({ name, reason: m.reason });
      continue;
    }
    if (shapes.has(m.to)) {
      // e.g. both cls.predictions.bias and cls.predictions.decoder.bias: HF ties them, keep the first.
      unused.push({ name, reason: `duplicate of ${m.to}` });
      continue;
    }
    if (!['F32', 'F16', 'BF16', 'F64'].includes(entry.dtype)) {
      throw new ModelError(`checkpoint tensor ${name} has dtype ${entry.dtype}; weights must be floating point`);
    }
    mapped.set(name, m.to);
    shapes.set(m.to, entry.shape);
  }

  let config: BertConfig;
  let configSource: ImportedCheckpoint['configSource'];
  if (options.config) {
    const problems = bertConfigProblems(options.config);
    if (problems.length > 0) throw new ModelError(`invalid config:\n  - ${problems.join('\n  - ')}`);
    config = options.config;
    configSource = 'given';
  } else if (options.hfConfig) {
    config = configFromHuggingFace(options.hfConfig, notes);
    configSource = 'config.json';
  } else {
    config = inferConfig(shapes, notes);
    configSource = 'inferred';
  }

  const classifier = shapes.get('classifier.weight');
  let numLabels = classifier && !options.dropClassifier ? classifier[0] : 0;
  const hasAnyMlm = [...shapes.keys()].some((n) => n.startsWith(MLM_HEAD_PREFIX));
  const missing: string[] = [];
  const full = expectedWeightShapes(config, { numLabels, mlmHead: hasAnyMlm && !options.dropMlmHead });
  let hasMlmHead = hasAnyMlm && !options.dropMlmHead;
  if (hasMlmHead) {
    const absent = [...full.keys()].filter((n) => n.startsWith(MLM_HEAD_PREFIX) && !shapes.has(n));
    if (absent.length > 0) {
      missing.push(...absent);
      notes.push(`the MLM head is incomplete (missing ${absent.join(', ')}); it is left out`);
      hasMlmHead = false;
    }
  }
  if (numLabels > 0 && !shapes.has('classifier.bias')) {
    missing.push('classifier.bias');
    notes.push('the classifier has no bias; it is left out');
    numLabels = 0;
  }
  // A CRF output layer (python/rmbert_train/crf.py) belongs to the classifier: all three weights or none
  // (a missing one is reported below), never dropped on its own, since decoding without it changes the
  // predictions.
  const hasCrf = numLabels > 0 && CRF_WEIGHT_NAMES.some((n) => shapes.has(n));
  const expected = expectedWeightShapes(config, { numLabels, mlmHead: hasMlmHead, crf: hasCrf });
  const problems: string[] = [];
  for (const [name, shape] of expected) {
    const got = shapes.get(name);
    if (!got) problems.push(`missing ${name} [${shape.join(', ')}]`);
    else if (got.length !== shape.length || got.some((d, i) => d !== shape[i])) {
      problems.push(`${name} has shape [${got.join(', ')}], the config needs [${shape.join(', ')}]`);
    }
  }
  if (problems.length > 0) {
    throw new ModelError(`checkpoint does not fit the ${configSource} config (${describeConfig(config)}):\n  - ${problems.join('\n  - ')}`);
  }

  const weights: WeightMap = new Map();
  for (const [from, to] of [...mapped]) {
    if (!expected.has(to)) {
      mapped.delete(from);
      const reason = to.startsWith(MLM_HEAD_PREFIX)
        ? 'MLM head left out'
        : to.startsWith('classifier.') || to.startsWith('crf.')
          ? 'classification head left out'
          : 'not in the model for this config (e.g. a layer beyond numLayers)';
      unused.push({ name: from, reason });
      continue;
    }
    const t = decodeSafetensorsTensor(buf, header, from);
    weights.set(to, { shape: [...t.shape], data: t.data as Float32Array });
  }
  return { config, configSource, numLabels, hasMlmHead, hasCrf, weights, mapped, missing, unused, notes };
}

function describeConfig(c: BertConfig): string {
  return `vocab ${c.vocabSize}, hidden ${c.hiddenSize}, ${c.numLayers} layers, ${c.numHeads} heads, intermediate ${c.intermediateSize}, ${c.maxPositions} positions`;
}

/**
 * Imports a checkpoint file; a Hugging Face config.json in the same directory is used for the config
 * unless `options.config` or `options.hfConfig` is given.
 */
export async function importCheckpointFile(file: string, options: ImportOptions = {}): Promise<ImportedCheckpoint> {
  let buf: Buffer;
  try {
    buf = await readFile(file);
  } catch (error) {
    throw new ModelError(`cannot read checkpoint ${file}: ${(error as Error).message}`, { cause: error });
  }
  let hfConfig = options.hfConfig;
  if (!options.config && !hfConfig) {
    const beside = path.join(path.dirname(file), 'config.json');
    let text: string | undefined;
    try {
      text = await readFile(beside, 'utf8');
    } catch {
      text = undefined;
    }
    if (text !== undefined) {
      try {
        hfConfig = JSON.parse(text) as Record<string, unknown>;
      } catch (error) {
        throw new ModelError(`${beside} is not valid JSON: ${(error as Error).message}`, { cause: error });
      }
    }
  }
  try {
    return importCheckpoint(buf, { ...options, hfConfig });
  } catch (error) {
    if (error instanceof ModelError) throw new ModelError(`${file}: ${error.message}`, { cause: error.cause ?? error });
    throw error;
  }
}
