/**
 * Plain types shared by every layer. Nothing here imports anything.
 * Character offsets are UTF-16 code-unit offsets into the original document text,
 * `end` exclusive, so that `text.slice(start, end)` is the mention.
 */

export interface Span {
  start: number;
  end: number;
}

/** A knowledge-graph triple: subject -[relation]-> object. */
export interface Triple {
  subject: string;
  relation: string;
  object: string;
}

/** One token produced by a tokenizer, with where it came from in the input text. */
export interface Token {
  text: string;
  id: number;
  /** Offsets into the text given to the tokenizer (UTF-16 code units, end exclusive). */
  start: number;
  end: number;
}

/** The port the knowledge layer uses to turn text into tokens; the model layer implements it. */
export interface TokenizerPort {
  tokenize(text: string): Token[];
  /** Token ids for special tokens the sentence tree may add. */
  readonly clsId: number;
  readonly sepId: number;
  readonly padId: number;
}

/** An EMR document as the pipeline sees it (after decoding). */
export interface Document {
  id: string;
  sourceSystem: string;
  /** Opaque patient reference: never logged, never a metric label. */
  patientRef: string;
  text: string;
  language: string;
  createdAt: number;
  section?: string | null;
}

/** A sentence cut out of a document; offsets are into the document text. */
export interface Sentence extends Span {
  docId: string;
  text: string;
}

export interface LinkedConcept {
  relation: string;
  object: string;
}

export interface Entity extends Span {
  text: string;
  type: string;
  /** Mean probability of the decoded tags over the span, in [0, 1]. */
  score: number;
  linked: LinkedConcept[];
  /** Absent when not assessed, which reads as present, certain, current, patient. */
  assertion?: EntityAssertion;
}

/** A lexicon trigger that decided one assertion value (offsets like Span's). */
export interface AssertionTrigger extends Span {
  text: string;
  property: 'negation' | 'uncertainty' | 'history' | 'family';
}

/** What the text asserts about an entity (ConText: negation, uncertainty, history, experiencer). */
export interface EntityAssertion {
  polarity: 'present' | 'absent';
  certainty: 'certain' | 'possible';
  temporality: 'current' | 'historical';
  experiencer: 'patient' | 'other';
  /** The triggers that decided each non-default value, at most one per property. */
  triggers: AssertionTrigger[];
}

export interface ModelVersion {
  /** Semantic name, e.g. "rmbert-medical-1.0.0". */
  name: string;
  /** First 12 hex chars of the sha256 over the artifact manifest. */
  hash: string;
}

export function formatModelVersion(v: ModelVersion): string {
  return `${v.name}+${v.hash}`;
}

/**
 * A sentence with knowledge injected (K-BERT sentence tree), ready for the model.
 * Arrays are indexed by hard (absolute) position.
 *
 * Visibility is kept compact: `branch[i]` is -1 for an original token, else the index of the
 * injected branch token i belongs to; `anchor[i]` is the index of the matched name that token i
 * belongs to (original tokens of a matched name and the tokens of its branches), else -1.
 * See `isVisible` for the rule.
 */
export interface InjectedSentence {
  tokenIds: Int32Array;
  softPositions: Int32Array;
  segmentIds: Int32Array;
  branch: Int32Array;
  anchor: Int32Array;
  /**
   * For original tokens: [start, end) character offsets into the document text; -1 for injected
   * and special tokens. Length = number of tokens.
   */
  charStart: Int32Array;
  charEnd: Int32Array;
}

/** Visibility rule of the sentence tree (paper fig. 3, K-BERT's add_knowledge_with_vm). */
export function isVisible(s: Pick<InjectedSentence, 'branch' | 'anchor'>, i: number, j: number): boolean {
  const bi = s.branch[i];
  const bj = s.branch[j];
  if (bi < 0 && bj < 0) return true;
  if (bi >= 0 && bi === bj) return true;
  const ai = s.anchor[i];
  return ai >= 0 && ai === s.anchor[j] && (bi < 0) !== (bj < 0);
}

/** Large negative added to attention scores where a pair is not visible (paper eq. 8). */
export const MASK_NEGATIVE = -10000;

/**
 * Writes the additive visibility mask of `s` into `out` (row-major [T, T] at `offset`, with
 * row stride `stride` >= length): 0 where visible, MASK_NEGATIVE where not; columns beyond the
 * sentence (padding) get MASK_NEGATIVE.
 */
export function writeAdditiveMask(
  s: Pick<InjectedSentence, 'branch' | 'anchor'>,
  out: Float32Array,
  offset: number,
  stride: number,
  rows = stride,
): void {
  const n = s.branch.length;
  for (let i = 0; i < rows; i++) {
    const row = offset + i * stride;
    if (i >= n) {
      // Padding rows see only the first token so softmax stays finite; their outputs are ignored.
      out.fill(MASK_NEGATIVE, row, row + stride);
      out[row] = 0;
      continue;
    }
    for (let j = 0; j < stride; j++) out[row + j] = j < n && isVisible(s, i, j) ? 0 : MASK_NEGATIVE;
  }
}

/** BIO tag sequence decoded for the original tokens of one injected sentence. */
export interface DecodedSpan {
  /** Token indices (hard positions) of the first and last original token of the span. */
  firstToken: number;
  lastToken: number;
  type: string;
  score: number;
}
