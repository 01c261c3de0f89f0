/**
 * A tiny tokenizer for the knowledge tests: one token per code point (a surrogate pair is one
 * token), ids from a small map, whitespace skipped, control characters dropped, combining marks kept
 * inside the preceding token. With `wordPieces`, runs of ASCII letters/digits become one word split
 * into pieces of at most `wordPieces` characters, later pieces prefixed "##" (like WordPiece).
 */
import type { Token, TokenizerPort } from '../../../src/domain/index.ts';
import { normalizeCodeUnit } from '../../../src/domain/text.ts';

export const TEST_VOCAB = [...'新冠肺炎可通过呼吸道飞沫传播类别疾病部位症状右踝内侧疼痛'];

export class TestTokenizer implements TokenizerPort {
  readonly padId = 0;
  readonly clsId = 1;
  readonly sepId = 2;
  readonly unkId = 3;
  private readonly ids = new Map<string, number>();
  private readonly wordPieces: number;

  constructor(options: { vocab?: readonly string[]; wordPieces?: number } = {}) {
    (options.vocab ?? TEST_VOCAB).forEach((t, i) => this.ids.set(t, 10 + i));
    this.wordPieces = options.wordPieces ?? 0;
  }

  idOf(text: string): number {
    return this.ids.get(text) ?? this.unkId;
  }

  tokenize(text: string): Token[] {
    const tokens: Token[] = [];
    const norm = (i: number): number => normalizeCodeUnit(text.charCodeAt(i));
    const isWordChar = (c: number): boolean => (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39);
    let i = 0;
    while (i < text.length) {
      const c = norm(i);
      if (c === 0x20 || c === 0x0a || c === 0x09 || c === 0x0d) {
        i++;
        continue;
      }
      if (c < 0x20 || (c >= 0x7f && c <= 0x9f)) {
        i++;
        continue;
      }
      if (c >= 0x300 && c <= 0x36f) {
        // A combining mark belongs to the previous token when it touches it.
        const last = tokens[tokens.length - 1];
        if (last && last.end === i) last.end = i + 1;
        i++;
        continue;
      }
      if (this.wordPieces > 0 && isWordChar(c)) {
        let end = i;
        while (end < text.length && isWordChar(norm(end))) end++;
        for (let p = i; p < end; p += this.wordPieces) {
          const pieceEnd = Math.min(end, p + this.wordPieces);
          let piece = '';
          for (let k = p; k < pieceEnd; k++) piece += String.fromCharCode(norm(k));
          const tokenText = p === i ? piece : `##${piece}`;
          tokens.push({ text: tokenText, id: this.idOf(tokenText), start: p, end: pieceEnd });
        }
        i = end;
        continue;
      }
      const cp = text.codePointAt(i)!;
      const width = cp > 0xffff ? 2 : 1;
      const tokenText = String.fromCodePoint(cp > 0xffff ? cp : c);
      tokens.push({ text: tokenText, id: this.idOf(tokenText), start: i, end: i + width });
      i += width;
    }
    return tokens;
  }
}
