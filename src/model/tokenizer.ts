/**
 * The bert-base-chinese tokenizer (BERT's BasicTokenizer + WordPiece, uncased), with exact character
 * offsets for every token.
 *
 * Behaviour, per character of the input (surrogate pairs count as one character):
 * - whitespace (tab, newline, CR, form feed, vertical tab, U+001C..U+001F, U+0085, Unicode Zs/Zl/Zp)
 *   separates words and yields no token;
 * - control and format characters (Unicode Cc/Cf) are dropped without separating words, like BERT's
 *   `_clean_text`; so are characters that normalise to nothing (lone combining marks);
 * - each CJK ideograph (BERT's `_is_chinese_char` ranges) is one token;
 * - each punctuation character (ASCII symbols and Unicode P*) is one token;
 * - every other run of characters is a word, split greedily longest-match-first into WordPiece pieces
 *   ("##" marks a continuation); a word with no full cover, or longer than 100 characters, is one [UNK].
 * Normalisation: with `foldFullWidth` (the default), first `normalizeCodeUnit` (full-width ASCII forms
 * U+FF01..U+FF5E to ASCII, ideographic space to space, ASCII lower case: the mapping the knowledge
 * matcher uses); then Unicode lower case, then BERT's accent stripping (NFD, drop combining marks Mn).
 * It is done per input character, so a token's [start, end) always covers whole input characters: a
 * combining mark stays inside its base letter's token, and a character whose NFD has several letters
 * (a Hangul syllable) maps all of them to its own span.
 *
 * Full-width forms. Hugging Face's BasicTokenizer does not fold them (NFD keeps U+FF0C "，", and
 * lower-casing maps "Ａ" to "ａ", not "a"), and bert-base-chinese's vocabulary has its own ids for "，",
 * "：", "（", "１", "ａ"... (68 of the 94 forms; no upper-case ones). Every model this project trained saw
 * the folded ids, so folding is the default; `foldFullWidth: false` gives Hugging Face's ids, for a
 * checkpoint trained elsewhere (artifact config `tokenizer.foldFullWidth`, see model/artifact.ts).
 * Word boundaries differ too: unfolded, "＋＜＝＞～｜＄＾｀" are symbols (Sm/Sc/Sk), not punctuation, so
 * they stay inside a word as in Hugging Face, where folded "+<=>~|$^`" are ASCII punctuation.
 *
 * Other deviations from the reference BasicTokenizer, all on rare characters: form feed, vertical tab,
 * U+001C..U+001F and U+0085 separate words instead of silently joining them; U+FFFD, private-use,
 * unassigned and lone-surrogate code units become [UNK] instead of vanishing (no silent loss);
 * literal "[MASK]" etc. in input text are plain text; lower-casing is per character, so a word-final
 * Greek capital sigma becomes σ, not ς.
 * Ids match Hugging Face's reference implementation on the fixture test/fixtures/parity/tokenizer.json
 * (whose texts the fixture script folds before giving them to Hugging Face) and, unfolded, on the cases
 * of test/unit/model/tokenizer.test.ts.
 */
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import type { Token, TokenizerPort } from '../domain/index.ts';
import { normalizeCodeUnit } from '../domain/text.ts';
import { SchemaError } from '../errors/index.ts';

/** The vocabulary shipped with the product (bert-base-chinese's). */
export const DEFAULT_VOCAB_PATH = fileURLToPath(new URL('../../data/vocab/vocab.txt', import.meta.url));
/** sha256 of the shipped vocabulary file. */
export const SHIPPED_VOCAB_SHA256 = '45bbac6b341c319adc98a532532882e91a9cefc0329aa57bac9ae761c27b291c';

/** BERT's max_input_chars_per_word. */
const MAX_CHARS_PER_WORD = 100;
/** Distinct words whose WordPiece split is remembered. */
const WORD_CACHE_LIMIT = 50_000;

// Character classes.
const UNCOMPUTED = 0;
const WHITESPACE = 1;
const TRANSPARENT = 2;
const PUNCT = 3;
const CJK = 4;
const WORD = 5;

// Normalised form of a BMP code unit: a single code unit (>= 0), several (MULTI: see CharTables.multi) or none (EMPTY).
const NORM_MULTI = -2;
const NORM_EMPTY = -3;

/** Class and normalised form of every BMP code unit, filled lazily; one set per folding mode. */
interface CharTables {
  readonly fold: boolean;
  readonly cls: Uint8Array;
  readonly norm: Int32Array;
  readonly multi: Map<number, string>;
}

function charTables(fold: boolean): CharTables {
  return { fold, cls: new Uint8Array(65536), norm: new Int32Array(65536), multi: new Map() };
}

const FOLDED_TABLES = charTables(true);
let rawTables: CharTables | null = null;
/** Astral characters are never folded: one cache serves both modes. */
const astralInfo = new Map<number, { cls: number; norm: string }>();

const PUNCT_RE = /^\p{P}$/u;
const SPACE_RE = /^[\p{Zs}\p{Zl}\p{Zp}]$/u;
const CONTROL_RE = /^[\p{Cc}\p{Cf}]$/u;
const MARKS_RE = /\p{Mn}/gu;
const ASCII_ONLY_RE = /^[\x00-\x7f]*$/;

function isChineseChar(cp: number): boolean {
  return (
    (cp >= 0x4e00 && cp <= 0x9fff) ||
    (cp >= 0x3400 && cp <= 0x4dbf) ||
    (cp >= 0x20000 && cp <= 0x2a6df) ||
    (cp >= 0x2a700 && cp <= 0x2b73f) ||
    (cp >= 0x2b740 && cp <= 0x2b81f) ||
    (cp >= 0x2b820 && cp <= 0x2ceaf) ||
    (cp >= 0xf900 && cp <= 0xfaff) ||
    (cp >= 0x2f800 && cp <= 0x2fa1f)
  );
}

function isAsciiPunct(c: number): boolean {
  return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) || (c >= 123 && c <= 126);
}

function isExtraWhitespace(c: number): boolean {
  return c === 9 || c === 10 || c === 13 || c === 0x0b || c === 0x0c || (c >= 0x1c && c <= 0x1f) || c === 0x85;
}

/** Lower case and accent stripping of one (already code-unit-normalised) character. */
function normalizeChar(s: string): string {
  const lower = s.toLowerCase();
  if (ASCII_ONLY_RE.test(lower)) return lower;
  return lower.normalize('NFD').replace(MARKS_RE, '');
}

function classify(cp: number, folded: number, norm: string): number {
  if (cp >= 0xd800 && cp <= 0xdfff) return WORD; // lone surrogate: unknown, never dropped
  if (isExtraWhitespace(folded)) return WHITESPACE;
  const foldedChar = String.fromCodePoint(folded);
  if (SPACE_RE.test(foldedChar)) return WHITESPACE;
  if (CONTROL_RE.test(foldedChar)) return TRANSPARENT;
  if (isChineseChar(cp)) return CJK;
  if (norm.length === 0) return TRANSPARENT;
  if (norm.length === 1) {
    const n = norm.charCodeAt(0);
    if (isAsciiPunct(n) || PUNCT_RE.test(norm)) return PUNCT;
  } else if (PUNCT_RE.test(foldedChar)) return PUNCT;
  return WORD;
}

function computeBmp(t: CharTables, c: number): number {
  const folded = t.fold ? normalizeCodeUnit(c) : c;
  const norm = c >= 0xd800 && c <= 0xdfff ? String.fromCharCode(c) : normalizeChar(String.fromCharCode(folded));
  t.norm[c] = norm.length === 1 ? norm.charCodeAt(0) : norm.length === 0 ? NORM_EMPTY : NORM_MULTI;
  if (norm.length > 1) t.multi.set(c, norm);
  return (t.cls[c] = classify(c, folded, norm));
}

function astral(cp: number): { cls: number; norm: string } {
  let info = astralInfo.get(cp);
  if (!info) {
    const norm = normalizeChar(String.fromCodePoint(cp));
    info = { cls: classify(cp, cp, norm), norm };
    astralInfo.set(cp, info);
  }
  return info;
}

/** The normalised text of one BMP code unit (after computeBmp). */
function bmpNormString(t: CharTables, c: number): string {
  const n = t.norm[c];
  return n >= 0 ? String.fromCharCode(n) : n === NORM_EMPTY ? '' : t.multi.get(c)!;
}

export interface TokenizerOptions {
  /**
   * Fold full-width ASCII forms (U+FF01..U+FF5E: "，" -> ",", "Ａ" -> "a") and the ideographic space
   * before lookup, as every model this project trained saw its text (default true). False tokenizes
   * them as Hugging Face's BertTokenizer does ("，" keeps its own id), for checkpoints trained elsewhere.
   */
  foldFullWidth?: boolean;
}

export class BertTokenizer implements TokenizerPort {
  /** See TokenizerOptions.foldFullWidth. */
  readonly foldFullWidth: boolean;
  readonly vocabSha256: string;
  readonly vocabSize: number;
  readonly padId: number;
  readonly unkId: number;
  readonly clsId: number;
  readonly sepId: number;
  readonly maskId: number;

  private readonly tokens: readonly string[];
  private readonly vocab = new Map<string, number>();
  /** Continuation pieces by their text without "##". */
  private readonly continuation = new Map<string, number>();
  /** Vocabulary id of each BMP code unit's normalised form as a whole token; -1 not in the vocabulary, -2 not computed. */
  private readonly charId = new Int32Array(65536).fill(-2);
  private readonly maxPieceLength: number;
  private readonly wordCache = new Map<string, Int32Array | null>();
  private readonly tables: CharTables;
  /** The tokenizer of the same vocabulary in the other folding mode, once asked for (see withOptions). */
  private sibling: BertTokenizer | null = null;

  // Per-word scratch: normalised code units and the input span each came from.
  private wordUnits = new Uint16Array(256);
  private wordStart = new Int32Array(256);
  private wordEnd = new Int32Array(256);

  /** Builds a tokenizer from the vocabulary lines (id = index). Prefer `load`. */
  constructor(tokens: readonly string[], vocabSha256: string, options: TokenizerOptions = {}) {
    this.foldFullWidth = options.foldFullWidth ?? true;
    this.tables = this.foldFullWidth ? FOLDED_TABLES : (rawTables ??= charTables(false));
    this.tokens = tokens;
    this.vocabSha256 = vocabSha256;
    this.vocabSize = tokens.length;
    let maxPiece = 1;
    tokens.forEach((token, id) => {
      if (this.vocab.has(token)) return;
      this.vocab.set(token, id);
      if (token.startsWith('##') && token.length > 2) {
        const rest = token.slice(2);
        if (!this.continuation.has(rest)) this.continuation.set(rest, id);
        maxPiece = Math.max(maxPiece, rest.length);
      } else maxPiece = Math.max(maxPiece, token.length);
    });
    this.maxPieceLength = maxPiece;
    const required = (name: string): number => {
      const id = this.vocab.get(name);
      if (id === undefined) throw new SchemaError(`vocabulary has no ${name} token`);
      return id;
    };
    this.padId = required('[PAD]');
    this.unkId = required('[UNK]');
    this.clsId = required('[CLS]');
    this.sepId = required('[SEP]');
    this.maskId = required('[MASK]');
  }

  /** Loads a vocab.txt (one token per line, id = line index); by default the shipped bert-base-chinese vocabulary. */
  static async load(vocabPath: string = DEFAULT_VOCAB_PATH, options: TokenizerOptions = {}): Promise<BertTokenizer> {
    return BertTokenizer.fromVocabBytes(await readVocab(vocabPath, (p) => readFile(p)), vocabPath, options);
  }

  /** Synchronous `load`, for composition roots and scripts that cannot await. */
  static loadSync(vocabPath: string = DEFAULT_VOCAB_PATH, options: TokenizerOptions = {}): BertTokenizer {
    let bytes: Uint8Array;
    try {
      bytes = readFileSync(vocabPath);
    } catch (error) {
      throw new SchemaError(`cannot read vocabulary ${vocabPath}: ${(error as Error).message}`, { cause: error });
    }
    return BertTokenizer.fromVocabBytes(bytes, vocabPath, options);
  }

  /** Parses vocab.txt bytes; `source` names the file in errors. */
  static fromVocabBytes(bytes: Uint8Array, source = 'vocabulary', options: TokenizerOptions = {}): BertTokenizer {
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    } catch (error) {
      throw new SchemaError(`${source} is not UTF-8`, { cause: error });
    }
    // Split on "\n" only: the vocabulary contains U+2028 as a token.
    const lines = text.split('\n');
    if (lines[lines.length - 1] === '') lines.pop();
    const tokens = lines.map((l) => (l.endsWith('\r') ? l.slice(0, -1) : l));
    return new BertTokenizer(tokens, createHash('sha256').update(bytes).digest('hex'), options);
  }

  /**
   * This vocabulary with these options: `this` when they are this tokenizer's, else the tokenizer of
   * the other folding mode (built once, then reused), e.g. the one an artifact's config asks for.
   */
  withOptions(options: TokenizerOptions): BertTokenizer {
    const fold = options.foldFullWidth ?? true;
    if (fold === this.foldFullWidth) return this;
    if (!this.sibling) {
      this.sibling = new BertTokenizer(this.tokens, this.vocabSha256, { foldFullWidth: fold });
      this.sibling.sibling = this;
    }
    return this.sibling;
  }

  idOf(token: string): number | undefined {
    return this.vocab.get(token);
  }

  tokenOf(id: number): string | undefined {
    return this.tokens[id];
  }

  /** Vocabulary id of a BMP code unit's normalised form, or -1. */
  private idOfUnit(c: number): number {
    let id = this.charId[c];
    if (id === -2) {
      if (this.tables.cls[c] === UNCOMPUTED) computeBmp(this.tables, c);
      id = this.vocab.get(bmpNormString(this.tables, c)) ?? -1;
      this.charId[c] = id;
    }
    return id;
  }

  private pushWordUnit(count: number, unit: number, start: number, end: number): void {
    if (count >= this.wordUnits.length) {
      const grow = <T extends Uint16Array | Int32Array>(a: T, make: (n: number) => T): T => {
        const b = make(a.length * 2);
        b.set(a);
        return b;
      };
      this.wordUnits = grow(this.wordUnits, (n) => new Uint16Array(n));
      this.wordStart = grow(this.wordStart, (n) => new Int32Array(n));
      this.wordEnd = grow(this.wordEnd, (n) => new Int32Array(n));
    }
    this.wordUnits[count] = unit;
    this.wordStart[count] = start;
    this.wordEnd[count] = end;
  }

  tokenize(text: string): Token[] {
    const tables = this.tables;
    const bmpClass = tables.cls;
    const bmpNorm = tables.norm;
    const out: Token[] = [];
    const len = text.length;
    let wordLength = 0; // normalised code units in the current word
    let wordChars = 0; // normalised characters (code points) in the current word
    let i = 0;
    while (i < len) {
      const c = text.charCodeAt(i);
      let width = 1;
      let cls: number;
      let astralNorm: string | undefined;
      if (c >= 0xd800 && c <= 0xdbff && i + 1 < len) {
        const d = text.charCodeAt(i + 1);
        if (d >= 0xdc00 && d <= 0xdfff) {
          width = 2;
          const info = astral(((c - 0xd800) << 10) + (d - 0xdc00) + 0x10000);
          cls = info.cls;
          astralNorm = info.norm;
        } else cls = bmpClass[c] || computeBmp(tables, c);
      } else cls = bmpClass[c] || computeBmp(tables, c);

      if (cls === WORD) {
        if (astralNorm === undefined) {
          const n = bmpNorm[c];
          if (n >= 0) this.pushWordUnit(wordLength++, n, i, i + 1);
          else {
            const s = tables.multi.get(c)!;
            for (let k = 0; k < s.length; k++) this.pushWordUnit(wordLength++, s.charCodeAt(k), i, i + 1);
          }
          wordChars += bmpNorm[c] >= 0 ? 1 : [...tables.multi.get(c)!].length;
        } else {
          for (let k = 0; k < astralNorm.length; k++) this.pushWordUnit(wordLength++, astralNorm.charCodeAt(k), i, i + 2);
          wordChars += [...astralNorm].length;
        }
      } else if (cls === TRANSPARENT) {
        // Joins the word it sits in (BERT drops it before splitting words); its span goes with the previous letter.
        if (wordLength > 0) this.wordEnd[wordLength - 1] = i + width;
      } else {
        if (wordLength > 0) {
          this.flushWord(wordLength, wordChars, out);
          wordLength = 0;
          wordChars = 0;
        }
        if (cls === CJK || cls === PUNCT) {
          let id: number;
          if (astralNorm === undefined) id = this.idOfUnit(c);
          else id = this.vocab.get(astralNorm) ?? -1;
          if (id < 0) id = this.unkId;
          out.push({ text: this.tokens[id], id, start: i, end: i + width });
        }
      }
      i += width;
    }
    if (wordLength > 0) this.flushWord(wordLength, wordChars, out);
    return out;
  }

  /** WordPiece over the buffered word: greedy longest match first; no full cover -> one [UNK] for the word. */
  private flushWord(length: number, chars: number, out: Token[]): void {
    const units = this.wordUnits;
    const starts = this.wordStart;
    const ends = this.wordEnd;
    // No closures in this hot path: tsx (esbuild keepNames) wraps each one in a costly __name call.
    if (chars > MAX_CHARS_PER_WORD) return this.pushUnknownWord(out, starts[0], ends[length - 1]);
    if (length === 1) {
      // Normalisation is idempotent, so the per-unit cache of the normalised unit gives its id.
      const id = this.idOfUnit(units[0]);
      if (id < 0) return this.pushUnknownWord(out, starts[0], ends[0]);
      out.push({ text: this.tokens[id], id, start: starts[0], end: ends[0] });
      return;
    }
    const word = String.fromCharCode.apply(null, units.subarray(0, length) as unknown as number[]);
    let pieces = this.wordCache.get(word);
    if (pieces === undefined) {
      pieces = this.wordPieces(word);
      // Bounded: text repeats its words, but an adversarial stream must not grow memory without limit.
      if (this.wordCache.size >= WORD_CACHE_LIMIT) this.wordCache.clear();
      this.wordCache.set(word, pieces);
    }
    if (pieces === null) return this.pushUnknownWord(out, starts[0], ends[length - 1]);
    for (let k = 0; k < pieces.length; k += 3) {
      const id = pieces[k];
      out.push({ text: this.tokens[id], id, start: starts[pieces[k + 1]], end: ends[pieces[k + 2] - 1] });
    }
  }

  private pushUnknownWord(out: Token[], start: number, end: number): void {
    out.push({ text: this.tokens[this.unkId], id: this.unkId, start, end });
  }

  /** Greedy longest-match-first WordPiece of a normalised word: flat [id, startUnit, endUnit]*, or null for [UNK]. */
  private wordPieces(word: string): Int32Array | null {
    const length = word.length;
    const found: number[] = [];
    let start = 0;
    while (start < length) {
      const table = start === 0 ? this.vocab : this.continuation;
      let end = Math.min(length, start + this.maxPieceLength);
      let id = -1;
      while (end > start) {
        // Never cut a surrogate pair in two.
        const last = word.charCodeAt(end - 1);
        if (!(last >= 0xd800 && last <= 0xdbff && end < length)) {
          const hit = table.get(start === 0 && end === length ? word : word.slice(start, end));
          if (hit !== undefined) {
            id = hit;
            break;
          }
        }
        end--;
      }
      if (id < 0) return null;
      found.push(id, start, end);
      start = end;
    }
    return Int32Array.from(found);
  }
}

async function readVocab(vocabPath: string, read: (p: string) => Promise<Uint8Array>): Promise<Uint8Array> {
  try {
    return await read(vocabPath);
  } catch (error) {
    throw new SchemaError(`cannot read vocabulary ${vocabPath}: ${(error as Error).message}`, { cause: error });
  }
}
