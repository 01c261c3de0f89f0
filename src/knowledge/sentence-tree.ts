/**
 * The sentence tree of K-BERT (paper section 1.1.2, figures 2 and 3; K-BERT's add_knowledge_with_vm):
 * each matched name is followed by its injected branches (relation + object, or object alone).
 *
 * - Hard position: every token in order, injected ones included (the array index).
 * - Soft position: original tokens keep consecutive positions as if nothing were injected; a branch
 *   continues from the position after its name's last token; parallel branches of one name share
 *   positions; the next original token resumes where the sentence left off.
 * - Visibility (compact, see `isVisible` in domain): original tokens see all original tokens; a
 *   name's tokens also see its branches; a branch sees itself and its name.
 * - [CLS] and [SEP] are original tokens (they see and are seen by the sentence, never a branch).
 *
 * Length budget: original text is never dropped. When a sentence with its branches exceeds
 * `maxLength`, branches are dropped, lowest priority first (second-ranked triples before first-ranked
 * ones, later names before earlier ones); when the original tokens alone do not fit, the sentence is
 * split into windows (each with its own [CLS]/[SEP] and offsets), never inside a matched name or
 * inside a word-piece sequence. The windows are balanced: a sentence that needs k windows gets k of
 * about n / k original tokens each (cut after a clause mark such as ，；。 when one is within a few
 * tokens of the even cut), so that every window keeps room for its own branches; filling the first
 * windows with original tokens would leave them none. Each window is built as a sentence of its own:
 * soft positions restart after its [CLS], its names see only its own branches.
 */
import type { InjectedSentence, Span, Token, TokenizerPort, Triple } from '../domain/index.ts';

export type InjectMode = 'relation+object' | 'object';

export interface SentenceTreeOptions {
  /** False gives the model input without knowledge (the BERT baseline, ablation -KG). Default true. */
  knowledge?: boolean;
  /** What a branch holds: relation + object (the paper's example, default) or the object alone (K-BERT's NER script). */
  inject?: InjectMode;
  /** At most this many branches per matched name (K-BERT: 2). Default 2. */
  maxEntities?: number;
  /** Tokens per model input, special tokens and branches included. Default 256. */
  maxLength?: number;
  /** Add [CLS] first and [SEP] last (default true). */
  specialTokens?: boolean;
  /** False uses hard positions as position ids (ablation -POS). Default true. */
  softPositions?: boolean;
  /** False makes every token see every other one (ablation -MASK). Default true. */
  visibilityMatrix?: boolean;
}

/** A matched concept name in the sentence text, with the triples found for it. */
export interface TreeMatch {
  /** [start, end) in UTF-16 code units of the sentence text. */
  start: number;
  end: number;
  /** In injection order (the first ones are kept when the budget is short). */
  triples: readonly Triple[];
}

export interface TreeInput {
  text: string;
  /** Offset of `text` in its document; added to every character offset of the output. Default 0. */
  start?: number;
  /** The tokenizer's tokens of `text`; computed when omitted. */
  tokens?: readonly Token[];
  /** Matched names, in text order and not overlapping (later overlapping ones are ignored). */
  matches?: readonly TreeMatch[];
}

export interface TreeLink extends Span {
  /** Hard positions of the name's first and last token in this window. */
  firstToken: number;
  lastToken: number;
  /** The name's triples considered for injection (at most maxEntities), in order. */
  triples: readonly Triple[];
  /** How many of them were injected (the rest were dropped for the length budget). */
  injected: number;
}

/** One model input: an InjectedSentence plus where it came from. */
export interface SentenceTree extends InjectedSentence {
  /** Document offsets [start, end) of the original text this window covers. */
  textStart: number;
  textEnd: number;
  /** Index of this window among the sentence's windows, and their number. */
  window: number;
  windows: number;
  /** Original text tokens (special tokens excluded) in this window. */
  originalTokens: number;
  links: TreeLink[];
  /** Branches dropped from this window to fit maxLength. */
  droppedBranches: number;
  /** Tokens injected from the graph (counted before the -MASK ablation clears `branch`). */
  injectedTokens: number;
}

interface ResolvedOptions {
  knowledge: boolean;
  inject: InjectMode;
  maxEntities: number;
  maxLength: number;
  specialTokens: boolean;
  softPositions: boolean;
  visibilityMatrix: boolean;
}

export function resolveTreeOptions(options: SentenceTreeOptions = {}): Readonly<ResolvedOptions> {
  const resolved: ResolvedOptions = {
    knowledge: options.knowledge ?? true,
    inject: options.inject ?? 'relation+object',
    maxEntities: options.maxEntities ?? 2,
    maxLength: options.maxLength ?? 256,
    specialTokens: options.specialTokens ?? true,
    softPositions: options.softPositions ?? true,
    visibilityMatrix: options.visibilityMatrix ?? true,
  };
  if (resolved.inject !== 'relation+object' && resolved.inject !== 'object') {
    throw new RangeError(`inject must be 'relation+object' or 'object', got ${String(resolved.inject)}`);
  }
  if (!Number.isInteger(resolved.maxEntities) || resolved.maxEntities < 0) {
    throw new RangeError(`maxEntities must be a non-negative integer, got ${resolved.maxEntities}`);
  }
  const minLength = resolved.specialTokens ? 3 : 1;
  if (!Number.isInteger(resolved.maxLength) || resolved.maxLength < minLength) {
    throw new RangeError(`maxLength must be an integer >= ${minLength}, got ${resolved.maxLength}`);
  }
  return Object.freeze(resolved);
}

/** A name placed on token indices, with its branches' token ids. */
interface PlacedMatch {
  start: number;
  end: number;
  firstTok: number;
  lastTok: number;
  triples: readonly Triple[];
  branches: Int32Array[];
  kept: number;
}

const FIELDS = 7;
/** At most this many tokens between a window cut and the even cut, to end the window on a clause mark. */
const MAX_CUT_SLACK = 12;
/** Marks that end a clause in Chinese text (full-width, as written): a good place to end a window. */
const CLAUSE_MARKS = new Set(['，', '；', '。', '！', '？', '、', '：', ';', '!', '?']);

/** The token is one clause mark (as written in the text, whatever the tokenizer folds it to). */
function isClauseEnd(text: string, token: Token): boolean {
  return token.end - token.start === 1 && CLAUSE_MARKS.has(text[token.start]);
}

function isContinuation(token: Token, previous: Token): boolean {
  return previous.end === token.start && token.text.charCodeAt(0) === 0x23 && token.text.charCodeAt(1) === 0x23;
}

export class SentenceTreeBuilder {
  readonly options: Readonly<ResolvedOptions>;
  private readonly tokenizer: TokenizerPort;
  /** Token ids of a branch per (relation, object): objects repeat a lot (five types in Medical). */
  private readonly branchCache = new Map<string, Int32Array>();
  private tokAtStart = new Int32Array(0);
  private tokAtEnd = new Int32Array(0);

  constructor(tokenizer: TokenizerPort, options: SentenceTreeOptions = {}) {
    this.tokenizer = tokenizer;
    this.options = resolveTreeOptions(options);
  }

  private branchIds(t: Triple): Int32Array {
    const key = `${t.relation}\t${t.object}`;
    let ids = this.branchCache.get(key);
    if (ids === undefined) {
      const parts = this.options.inject === 'relation+object' ? [t.relation, t.object] : [t.object];
      // Relation and object are tokenized apart so a Latin relation never glues to a Latin object.
      const list: number[] = [];
      for (const part of parts) for (const tok of this.tokenizer.tokenize(part)) list.push(tok.id);
      ids = Int32Array.from(list);
      if (this.branchCache.size >= 100_000) this.branchCache.clear();
      this.branchCache.set(key, ids);
    }
    return ids;
  }

  /** Places matches on token indices; drops those not on token boundaries or overlapping an earlier one. */
  private place(text: string, tokens: readonly Token[], matches: readonly TreeMatch[]): PlacedMatch[] {
    const n = text.length;
    if (this.tokAtStart.length < n + 1) {
      const cap = Math.max(n + 1, this.tokAtStart.length * 2);
      this.tokAtStart = new Int32Array(cap);
      this.tokAtEnd = new Int32Array(cap);
    }
    const atStart = this.tokAtStart;
    const atEnd = this.tokAtEnd;
    atStart.fill(-1, 0, n + 1);
    atEnd.fill(-1, 0, n + 1);
    for (let k = 0; k < tokens.length; k++) {
      const tok = tokens[k];
      if (tok.start >= 0 && tok.start <= n) atStart[tok.start] = k;
      if (tok.end >= 0 && tok.end <= n) atEnd[tok.end] = k;
    }
    const placed: PlacedMatch[] = [];
    let lastTok = -1;
    for (const m of matches) {
      if (m.start < 0 || m.end > n || m.start >= m.end) continue;
      const firstTok = atStart[m.start];
      const endTok = atEnd[m.end];
      if (firstTok < 0 || endTok < firstTok || firstTok <= lastTok) continue;
      const triples = m.triples.length > this.options.maxEntities ? m.triples.slice(0, this.options.maxEntities) : m.triples;
      const branches: Int32Array[] = [];
      for (const t of triples) {
        const ids = this.branchIds(t);
        if (ids.length > 0) branches.push(ids);
      }
      placed.push({ start: m.start, end: m.end, firstTok, lastTok: endTok, triples, branches, kept: 0 });
      lastTok = endTok;
    }
    return placed;
  }

  /**
   * Window boundaries over original tokens: [0, c1, ..., n]. A sentence that fits is one window. A longer
   * one needing k = ceil(n / capacity) windows is cut into k windows of about n / k tokens, one cut at a
   * time (the count is recomputed for what is left, so a cut moved by a name or a word only adds a window
   * when it must).
   */
  private windows(text: string, tokens: readonly Token[], placed: PlacedMatch[], capacity: number): number[] {
    const n = tokens.length;
    if (n <= capacity) return [0, n];
    // Positions a window may not end at (cut between tokens e - 1 and e): inside a word-piece
    // sequence or inside a matched name.
    const blocked = new Uint8Array(n + 1);
    for (let e = 1; e < n; e++) if (isContinuation(tokens[e], tokens[e - 1])) blocked[e] = 1;
    for (const p of placed) blocked.fill(1, p.firstTok + 1, p.lastTok + 1);
    const cuts: number[] = [0];
    let start = 0;
    while (n - start > capacity) {
      const left = n - start;
      const count = Math.ceil(left / capacity); // windows still needed, this one included
      const ideal = start + Math.ceil(left / count);
      const hi = start + capacity;
      // The rest must still fit in count - 1 windows.
      const lo = Math.max(start + 1, n - (count - 1) * capacity);
      const slack = Math.min(MAX_CUT_SLACK, Math.max(1, Math.floor((ideal - start) / 10)));
      let end = -1;
      // 1. After a clause mark near the even cut (nearest first, later one on a tie).
      for (let d = 0; d <= slack && end < 0; d++) {
        for (const e of [ideal + d, ideal - d]) {
          if (e >= lo && e <= hi && !blocked[e] && isClauseEnd(text, tokens[e - 1])) {
            end = e;
            break;
          }
        }
      }
      // 2. The allowed position nearest the even cut that keeps the window count.
      for (let d = 0; end < 0 && (ideal + d <= hi || ideal - d >= lo); d++) {
        if (ideal + d <= hi && !blocked[ideal + d]) end = ideal + d;
        else if (ideal - d >= lo && !blocked[ideal - d]) end = ideal - d;
      }
      // 3. The last allowed position (one more window follows), else a cut inside a word or a name
      //    longer than a whole window (the name loses its branches).
      for (let e = lo - 1; end < 0 && e > start; e--) if (!blocked[e]) end = e;
      if (end < 0) end = hi;
      cuts.push(end);
      start = end;
    }
    cuts.push(n);
    return cuts;
  }

  /**
   * Builds the model input(s) of one sentence: usually one tree, several windows when the
   * original tokens alone exceed maxLength.
   */
  build(input: TreeInput): SentenceTree[] {
    const opts = this.options;
    const text = input.text;
    const offset = input.start ?? 0;
    const tokens = input.tokens ?? this.tokenizer.tokenize(text);
    const placed = opts.knowledge && opts.maxEntities > 0 && input.matches?.length ? this.place(text, tokens, input.matches) : [];
    const specials = opts.specialTokens ? 2 : 0;
    const capacity = opts.maxLength - specials;
    const cuts = this.windows(text, tokens, placed, capacity);
    const trees: SentenceTree[] = [];
    let firstMatch = 0;
    for (let w = 0; w + 1 < cuts.length; w++) {
      const ws = cuts[w];
      const we = cuts[w + 1];
      while (firstMatch < placed.length && placed[firstMatch].firstTok < ws) firstMatch++;
      let lastMatch = firstMatch;
      while (lastMatch < placed.length && placed[lastMatch].lastTok < we) lastMatch++;
      const inWindow = placed.slice(firstMatch, lastMatch);
      const dropped = this.fitBranches(inWindow, capacity - (we - ws));
      trees.push(this.emit(tokens, ws, we, inWindow, offset, dropped, w, cuts.length - 1));
      firstMatch = lastMatch;
    }
    return trees;
  }

  /** Keeps the longest prefix of branches, in priority order, that fits `budget` tokens; returns how many were dropped. */
  private fitBranches(matches: PlacedMatch[], budget: number): number {
    let total = 0;
    let count = 0;
    let maxRank = 0;
    for (const m of matches) {
      m.kept = m.branches.length;
      count += m.branches.length;
      maxRank = Math.max(maxRank, m.branches.length);
      for (const b of m.branches) total += b.length;
    }
    if (total <= budget) return 0;
    let used = 0;
    let kept = 0;
    for (const m of matches) m.kept = 0;
    // Priority: rank first (every name's first triple before any second one), then text order.
    for (let rank = 0; rank < maxRank; rank++) {
      for (const m of matches) {
        if (rank >= m.branches.length) continue;
        const len = m.branches[rank].length;
        if (used + len > budget) return count - kept;
        used += len;
        m.kept = rank + 1;
        kept++;
      }
    }
    return count - kept;
  }

  private emit(
    tokens: readonly Token[],
    ws: number,
    we: number,
    matches: PlacedMatch[],
    offset: number,
    droppedBranches: number,
    window: number,
    windows: number,
  ): SentenceTree {
    const opts = this.options;
    const specials = opts.specialTokens ? 2 : 0;
    let length = specials + (we - ws);
    for (const m of matches) for (let b = 0; b < m.kept; b++) length += m.branches[b].length;

    // One allocation for all seven arrays.
    const buffer = new Int32Array(FIELDS * length);
    const tokenIds = buffer.subarray(0, length);
    const softPositions = buffer.subarray(length, 2 * length);
    const segmentIds = buffer.subarray(2 * length, 3 * length);
    const branch = buffer.subarray(3 * length, 4 * length);
    const anchor = buffer.subarray(4 * length, 5 * length);
    const charStart = buffer.subarray(5 * length, 6 * length);
    const charEnd = buffer.subarray(6 * length, 7 * length);
    branch.fill(-1);
    anchor.fill(-1);
    charStart.fill(-1);
    charEnd.fill(-1);

    const links: TreeLink[] = [];
    let h = 0;
    let soft = 0;
    if (opts.specialTokens) {
      tokenIds[h] = this.tokenizer.clsId;
      softPositions[h] = soft++;
      h++;
    }
    let mi = 0;
    let anchorIndex = -1;
    for (let k = ws; k < we; k++) {
      const tok = tokens[k];
      const m = mi < matches.length ? matches[mi] : undefined;
      if (m !== undefined && k === m.firstTok) {
        anchorIndex = m.kept > 0 ? h : -1;
        links.push({
          start: m.start + offset,
          end: m.end + offset,
          firstToken: h,
          lastToken: h + (m.lastTok - m.firstTok),
          triples: m.triples,
          injected: m.kept,
        });
      }
      tokenIds[h] = tok.id;
      softPositions[h] = soft;
      charStart[h] = tok.start + offset;
      charEnd[h] = tok.end + offset;
      if (m !== undefined && k >= m.firstTok) anchor[h] = anchorIndex;
      h++;
      if (m !== undefined && k === m.lastTok) {
        for (let b = 0; b < m.kept; b++) {
          const ids = m.branches[b];
          const branchIndex = h;
          for (let j = 0; j < ids.length; j++) {
            tokenIds[h] = ids[j];
            // Parallel branches of one name all start right after the name.
            softPositions[h] = soft + 1 + j;
            branch[h] = branchIndex;
            anchor[h] = anchorIndex;
            h++;
          }
        }
        mi++;
        anchorIndex = -1;
      }
      soft++;
    }
    if (opts.specialTokens) {
      tokenIds[h] = this.tokenizer.sepId;
      softPositions[h] = soft;
      h++;
    }
    if (!opts.softPositions) for (let i = 0; i < length; i++) softPositions[i] = i;
    let injectedTokens = 0;
    for (let i = 0; i < length; i++) if (branch[i] >= 0) injectedTokens++;
    if (!opts.visibilityMatrix) {
      branch.fill(-1);
      anchor.fill(-1);
    }

    const textStart = we > ws ? tokens[ws].start + offset : offset;
    const textEnd = we > ws ? tokens[we - 1].end + offset : offset;
    return {
      tokenIds,
      softPositions,
      segmentIds,
      branch,
      anchor,
      charStart,
      charEnd,
      textStart,
      textEnd,
      window,
      windows,
      originalTokens: we - ws,
      links,
      droppedBranches,
      injectedTokens,
    };
  }
}

/**
 * Per-token label ids from per-character label ids of the sentence (one per UTF-16 code unit of
 * the sentence text, whose document offset is `textStart`): an original token takes the label of its
 * first character; injected and special tokens get -1 (ignored by the loss, dropped at decoding).
 */
export function alignLabels(tree: Pick<InjectedSentence, 'charStart'>, charLabels: ArrayLike<number>, textStart = 0): Int32Array {
  const out = new Int32Array(tree.charStart.length);
  for (let i = 0; i < out.length; i++) {
    const c = tree.charStart[i];
    if (c < 0) {
      out[i] = -1;
      continue;
    }
    const at = c - textStart;
    if (at < 0 || at >= charLabels.length) {
      throw new RangeError(`token ${i} starts at document offset ${c}, outside the ${charLabels.length} labelled characters from ${textStart}`);
    }
    out[i] = charLabels[at];
  }
  return out;
}
