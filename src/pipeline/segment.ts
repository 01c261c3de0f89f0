import type { Sentence } from '../domain/index.ts';

/** Sentence-final punctuation (full-width and ASCII); the mark stays with the sentence it ends. */
const TERMINATORS = new Set(['。', '！', '？', '；', '!', '?', ';']);
const CLOSERS = new Set(['”', '’', '」', '』', '）', ')', '】', '"', "'"]);
const NEWLINES = new Set(['\n', '\r', '\u2028', '\u2029']);

function isSpace(ch: string): boolean {
  return ch === ' ' || ch === '\t' || ch === '\u3000' || ch === '\u00a0' || ch === '\f' || ch === '\v' || NEWLINES.has(ch);
}

/**
 * Splits a document into sentences at 。！？；!?; and line breaks, keeping character offsets into
 * the document. A run of terminators stays with its sentence; surrounding white space is trimmed
 * and empty pieces are skipped, so `text.slice(s.start, s.end) === s.text` for every sentence.
 * Long sentences are not cut here: the knowledge layer windows them to the model's length budget.
 */
export function segmentSentences(docId: string, text: string): Sentence[] {
  const sentences: Sentence[] = [];
  const push = (from: number, to: number) => {
    while (from < to && isSpace(text[from])) from++;
    while (to > from && isSpace(text[to - 1])) to--;
    if (to > from) sentences.push({ docId, start: from, end: to, text: text.slice(from, to) });
  };
  let start = 0;
  let i = 0;
  while (i < text.length) {
    const ch = text[i];
    if (NEWLINES.has(ch)) {
      push(start, i);
      start = i + 1;
      i++;
    } else if (TERMINATORS.has(ch)) {
      let end = i + 1;
      // Further marks, and closing quotes and brackets, right after the mark belong to the sentence it ends.
      while (end < text.length && (TERMINATORS.has(text[end]) || CLOSERS.has(text[end]))) end++;
      push(start, end);
      start = end;
      i = end;
    } else {
      i++;
    }
  }
  push(start, text.length);
  return sentences;
}
