/**
 * Tag decoding: BIO-constrained Viterbi over the original tokens of an injected sentence.
 *
 * Injected (knowledge) tokens and special tokens carry no label and are dropped first (branch[i] >= 0
 * or charStart[i] < 0), so spans are always on the original text. Per-token tag log-probabilities come
 * from the logits by log-softmax; the best sequence maximises their sum subject to BIO validity: I-X only
 * after B-X or I-X of the same type, never first. A model with a CRF output layer adds its learned
 * transition scores (crf.transitions [L, L], crf.start_transitions [L], crf.end_transitions [L] in the
 * artifact's weights, trained by python/rmbert_train/crf.py under the same BIO constraint); log-softmax
 * only subtracts a constant per token, so the best path is the CRF's own. Without a CRF, where greedy
 * argmax is already valid Viterbi returns it unchanged.
 */
import type { DecodedSpan, Entity, InjectedSentence } from '../domain/index.ts';
import { ModelError } from '../errors/index.ts';
import type { WeightMap } from './types.ts';

/** Learned scores of a CRF output layer, row-major transitions[prev * L + next]. */
export interface CrfScores {
  transitions: Float64Array;
  start: Float64Array;
  end: Float64Array;
}

export const CRF_WEIGHT_NAMES = ['crf.transitions', 'crf.start_transitions', 'crf.end_transitions'] as const;

/**
 * The CRF scores in a weight map, or null when the model has no CRF layer. A partial or misshapen layer is
 * a ModelError: decoding without it would silently change the model's predictions.
 */
export function crfScoresFrom(weights: WeightMap, numLabels: number): CrfScores | null {
  const present = CRF_WEIGHT_NAMES.filter((n) => weights.has(n));
  if (present.length === 0) return null;
  if (present.length !== CRF_WEIGHT_NAMES.length) {
    throw new ModelError(`the CRF layer is incomplete: it has ${present.join(', ')} but not ${CRF_WEIGHT_NAMES.filter((n) => !weights.has(n)).join(', ')}`);
  }
  const get = (name: string, shape: number[]) => {
    const w = weights.get(name)!;
    if (w.shape.join(',') !== shape.join(',')) throw new ModelError(`${name} has shape [${w.shape}], expected [${shape}] for ${numLabels} labels`);
    return Float64Array.from(w.data);
  };
  return {
    transitions: get('crf.transitions', [numLabels, numLabels]),
    start: get('crf.start_transitions', [numLabels]),
    end: get('crf.end_transitions', [numLabels]),
  };
}

interface ParsedLabel {
  kind: 'O' | 'B' | 'I';
  type: string;
}

function parseLabel(label: string): ParsedLabel {
  if (label === 'O') return { kind: 'O', type: '' };
  const m = /^([BI])-(.+)$/.exec(label);
  if (!m) throw new ModelError(`label ${JSON.stringify(label)} is not O, B-<type> or I-<type>`);
  return { kind: m[1] as 'B' | 'I', type: m[2] };
}

/** Hard positions of the tokens that carry labels: original (not injected), not special. */
export function labelledPositions(sentence: Pick<InjectedSentence, 'branch' | 'charStart'>): Int32Array {
  const n = sentence.branch.length;
  let count = 0;
  for (let i = 0; i < n; i++) if (sentence.branch[i] < 0 && sentence.charStart[i] >= 0) count++;
  const out = new Int32Array(count);
  for (let i = 0, k = 0; i < n; i++) if (sentence.branch[i] < 0 && sentence.charStart[i] >= 0) out[k++] = i;
  return out;
}

/** Row-wise log-softmax of `logits` [rows, width] (row-major), for the given rows only, in float64. */
export function logSoftmaxRows(logits: Float32Array, width: number, rows: ArrayLike<number>): Float64Array {
  const out = new Float64Array(rows.length * width);
  for (let r = 0; r < rows.length; r++) {
    const base = rows[r] * width;
    let max = -Infinity;
    for (let j = 0; j < width; j++) max = Math.max(max, logits[base + j]);
    let sum = 0;
    for (let j = 0; j < width; j++) sum += Math.exp(logits[base + j] - max);
    const logSum = max + Math.log(sum);
    for (let j = 0; j < width; j++) out[r * width + j] = logits[base + j] - logSum;
  }
  return out;
}

/** BIO-constrained Viterbi for one label set; reusable across sentences. */
export class BioDecoder {
  readonly labels: readonly string[];
  private readonly parsed: ParsedLabel[];
  /** allowed[prev * L + next]: transition prev -> next is valid. */
  private readonly allowed: Uint8Array;
  private readonly allowedFirst: Uint8Array;
  readonly crf: CrfScores | null;

  constructor(labels: readonly string[], crf: CrfScores | null = null) {
    if (labels.length === 0) throw new ModelError('cannot decode tags: the label set is empty');
    this.labels = labels;
    this.parsed = labels.map(parseLabel);
    const L = labels.length;
    this.allowed = new Uint8Array(L * L);
    this.allowedFirst = new Uint8Array(L);
    for (let next = 0; next < L; next++) {
      const n = this.parsed[next];
      this.allowedFirst[next] = n.kind === 'I' ? 0 : 1;
      for (let prev = 0; prev < L; prev++) {
        const p = this.parsed[prev];
        this.allowed[prev * L + next] = n.kind !== 'I' || (p.kind !== 'O' && p.type === n.type) ? 1 : 0;
      }
    }
    if (!this.allowedFirst.some((a) => a === 1)) throw new ModelError('cannot decode tags: every label is an I- tag');
    if (crf && (crf.transitions.length !== L * L || crf.start.length !== L || crf.end.length !== L)) {
      throw new ModelError(`CRF scores do not fit ${L} labels`);
    }
    this.crf = crf;
  }

  /**
   * Best valid tag sequence for `n` tokens given log-probabilities [n, L]; returns tag indices.
   * Ties go to the lower label index, so the result is deterministic.
   */
  viterbi(logProbs: Float64Array, n: number): Int32Array {
    const L = this.labels.length;
    const tags = new Int32Array(n);
    if (n === 0) return tags;
    let score = new Float64Array(L);
    let next = new Float64Array(L);
    const back = new Int32Array(n * L);
    const crf = this.crf;
    for (let j = 0; j < L; j++) score[j] = this.allowedFirst[j] ? logProbs[j] + (crf ? crf.start[j] : 0) : -Infinity;
    for (let t = 1; t < n; t++) {
      for (let j = 0; j < L; j++) {
        let best = -Infinity;
        let arg = -1;
        for (let i = 0; i < L; i++) {
          if (!this.allowed[i * L + j]) continue;
          const candidate = crf ? score[i] + crf.transitions[i * L + j] : score[i];
          if (candidate > best) {
            best = candidate;
            arg = i;
          }
        }
        next[j] = arg < 0 ? -Infinity : best + logProbs[t * L + j];
        back[t * L + j] = arg;
      }
      [score, next] = [next, score];
    }
    if (crf) for (let j = 0; j < L; j++) score[j] += crf.end[j];
    let last = 0;
    for (let j = 1; j < L; j++) if (score[j] > score[last]) last = j;
    tags[n - 1] = last;
    for (let t = n - 1; t > 0; t--) tags[t - 1] = back[t * L + tags[t]];
    return tags;
  }

  /** Spans of a valid tag sequence over positions 0..n-1, with the mean probability of the chosen tags. */
  tagsToSpans(tags: Int32Array, logProbs: Float64Array, positions: ArrayLike<number>): DecodedSpan[] {
    const L = this.labels.length;
    const spans: DecodedSpan[] = [];
    let open = -1;
    let sum = 0;
    const close = (end: number): void => {
      if (open < 0) return;
      spans.push({
        firstToken: positions[open],
        lastToken: positions[end],
        type: this.parsed[tags[open]].type,
        score: sum / (end - open + 1),
      });
      open = -1;
    };
    for (let t = 0; t < tags.length; t++) {
      const label = this.parsed[tags[t]];
      const p = Math.exp(logProbs[t * L + tags[t]]);
      if (label.kind === 'I' && open >= 0 && this.parsed[tags[open]].type === label.type) {
        sum += p;
        continue;
      }
      close(t - 1);
      if (label.kind !== 'O') {
        // An I- tag can only open a span if the sequence came from elsewhere than viterbi(); treat it as B-.
        open = t;
        sum = p;
      }
    }
    close(tags.length - 1);
    return spans;
  }

  /**
   * Decodes one sentence from its logits, row-major [T, L] over every hard position (what
   * InferenceEngine.classify returns). Only original, non-special tokens take part.
   */
  decode(sentence: InjectedSentence, logits: Float32Array): DecodedSpan[] {
    const T = sentence.tokenIds.length;
    const L = this.labels.length;
    if (logits.length !== T * L) {
      throw new ModelError(`logits hold ${logits.length} values; a sentence of ${T} tokens with ${L} labels needs ${T * L}`);
    }
    const positions = labelledPositions(sentence);
    const logProbs = logSoftmaxRows(logits, L, positions);
    const tags = this.viterbi(logProbs, positions.length);
    return this.tagsToSpans(tags, logProbs, positions);
  }
}

const decoders = new WeakMap<readonly string[], BioDecoder>();

/** `new BioDecoder(labels).decode(sentence, logits)` (no CRF layer), with the decoder cached per label array. */
export function decodeSentence(sentence: InjectedSentence, logits: Float32Array, labels: readonly string[]): DecodedSpan[] {
  let decoder = decoders.get(labels);
  if (!decoder) {
    decoder = new BioDecoder(labels);
    decoders.set(labels, decoder);
  }
  return decoder.decode(sentence, logits);
}

/**
 * Entities on the document text from decoded spans: [charStart of the first token, charEnd of the last).
 * `linked` is left empty; the pipeline fills it from the knowledge matches.
 */
export function spansToEntities(
  sentence: Pick<InjectedSentence, 'charStart' | 'charEnd'>,
  spans: readonly DecodedSpan[],
  documentText: string,
): Entity[] {
  return spans.map((span) => {
    const start = sentence.charStart[span.firstToken];
    const end = sentence.charEnd[span.lastToken];
    if (!(start >= 0 && end > start && end <= documentText.length)) {
      throw new ModelError(`span over tokens ${span.firstToken}..${span.lastToken} has no valid character offsets [${start}, ${end})`);
    }
    return { start, end, text: documentText.slice(start, end), type: span.type, score: span.score, linked: [] };
  });
}
