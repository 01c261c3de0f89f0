/**
 * Contracts shared by the model's parts (tfjs encoder, ONNX engine, artifacts, importer, trainer).
 *
 * Weight names and layouts follow Hugging Face's BertForTokenClassification / BertForMaskedLM, so that
 * standard checkpoints import without renaming. Linear weights are stored [out, in] (PyTorch layout):
 *   bert.embeddings.word_embeddings.weight            [vocabSize, hidden]
 *   bert.embeddings.position_embeddings.weight        [maxPositions, hidden]   (indexed by SOFT position)
 *   bert.embeddings.token_type_embeddings.weight      [typeVocabSize, hidden]
 *   bert.embeddings.LayerNorm.{weight,bias}           [hidden]
 *   bert.encoder.layer.{i}.attention.self.{query,key,value}.weight [hidden, hidden], .bias [hidden]
 *   bert.encoder.layer.{i}.attention.output.dense.weight [hidden, hidden], .bias
 *   bert.encoder.layer.{i}.attention.output.LayerNorm.{weight,bias}
 *   bert.encoder.layer.{i}.intermediate.dense.weight  [intermediate, hidden], .bias [intermediate]
 *   bert.encoder.layer.{i}.output.dense.weight        [hidden, intermediate], .bias [hidden]
 *   bert.encoder.layer.{i}.output.LayerNorm.{weight,bias}
 *   classifier.weight [numLabels, hidden], classifier.bias [numLabels]           (token classification)
 *   cls.predictions.transform.dense.{weight [hidden, hidden], bias}, cls.predictions.transform.LayerNorm.{weight,bias},
 *   cls.predictions.bias [vocabSize]  (MLM head; the decoder is tied to the word embeddings)
 * Activation: exact (erf) GELU. Attention: scores / sqrt(headSize) + additive visibility mask
 * [batch, T, T] (0 visible, MASK_NEGATIVE not), the same mask in every layer; LayerNorm eps from config.
 */
import type { InjectedSentence, ModelVersion } from '../domain/index.ts';

export interface BertConfig {
  vocabSize: number;
  hiddenSize: number;
  numLayers: number;
  numHeads: number;
  intermediateSize: number;
  maxPositions: number;
  typeVocabSize: number;
  layerNormEps: number;
}

export interface WeightTensor {
  shape: number[];
  data: Float32Array;
}

export type WeightMap = Map<string, WeightTensor>;

/** How the knowledge layer was configured when the model was trained; the stage must inject the same way. */
export interface KnowledgeOptions {
  inject: 'relation+object' | 'object';
  maxEntities: number;
  maxLength: number;
  /** Version stamp (content hash) of the graph used in training, if any. */
  kgVersion?: string;
  /** False for a model trained without knowledge injection (the "BERT" baseline). */
  enabled: boolean;
}

/** How the model's text was tokenized (src/model/tokenizer.ts, TokenizerOptions); the stage must tokenize the same way. */
export interface TokenizerConfig {
  /**
   * Full-width ASCII forms ("，", "（", "Ａ", "１") folded to ASCII before lookup. Absent config.tokenizer
   * means true: every model this project trained saw folded text. False for a checkpoint trained
   * elsewhere (Hugging Face's BertTokenizer does not fold).
   */
  foldFullWidth: boolean;
}

/** config.json of a model artifact directory. */
export interface ArtifactConfig {
  /** Semantic name, e.g. "rmbert-medical-1.0.0". */
  name: string;
  model: BertConfig;
  /** BIO label set, index = class id; "O" first. Empty for a backbone without a classification head. */
  labels: string[];
  /** sha256 of the vocabulary file the token ids refer to. */
  vocabSha256: string;
  /** Tokenizer options; absent in artifacts made before the field existed (see tokenizerConfigOf). */
  tokenizer?: TokenizerConfig;
  knowledge: KnowledgeOptions;
  /** Free-form facts about how the artifact was made (training data, steps, metrics). */
  training?: Record<string, unknown>;
  createdAt: string;
}

export interface ModelArtifact {
  dir: string;
  config: ArtifactConfig;
  weights: WeightMap;
  version: ModelVersion;
}

/**
 * A token-classification engine: the tfjs forward pass or the ONNX Runtime one, same weights.
 * `classify` returns, per input sentence, row-major logits [tokens, numLabels] for every hard position.
 * Implementations batch internally (length buckets, dynamic padding, a cap on tokens per batch).
 */
export interface InferenceEngine {
  /** e.g. "onnxruntime-cpu", "tfjs-wasm", "tfjs-node-gpu". */
  readonly name: string;
  readonly version: ModelVersion;
  readonly labels: readonly string[];
  classify(sentences: readonly InjectedSentence[]): Promise<Float32Array[]>;
  dispose(): Promise<void>;
}
