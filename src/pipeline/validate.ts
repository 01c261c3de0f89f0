import type { Document } from '../domain/index.ts';
import { EmptyTextError, InvalidDocumentError, InvalidTextError, TextTooLongError } from './errors.ts';

export interface DocumentLimits {
  maxTextChars: number;
}

/**
 * Index of the first code unit that makes the text invalid Unicode, or -1: a lone (unpaired)
 * surrogate, or U+FFFD, which a UTF-8 decoder leaves where the bytes were not valid UTF-8.
 */
export function firstInvalidCodeUnit(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0xfffd) return i;
    if (c >= 0xd800 && c <= 0xdbff) {
      const next = i + 1 < text.length ? text.charCodeAt(i + 1) : 0;
      if (next >= 0xdc00 && next <= 0xdfff) {
        i++;
        continue;
      }
      return i;
    }
    if (c >= 0xdc00 && c <= 0xdfff) return i;
  }
  return -1;
}

/** Throws a PoisonRecordError subclass when the document cannot be annotated; the message never quotes the text. */
export function validateDocument(doc: Document, limits: DocumentLimits): void {
  if (typeof doc.id !== 'string' || doc.id.trim() === '') throw new InvalidDocumentError('document id is empty');
  if (doc.id.length > 512) throw new InvalidDocumentError(`document id is ${doc.id.length} characters long (at most 512)`);
  if (typeof doc.text !== 'string' || doc.text.trim() === '') throw new EmptyTextError('document text is empty');
  if (doc.text.length > limits.maxTextChars) {
    throw new TextTooLongError(`document text has ${doc.text.length} characters, more than the limit of ${limits.maxTextChars}`);
  }
  const bad = firstInvalidCodeUnit(doc.text);
  if (bad >= 0) {
    const code = doc.text.charCodeAt(bad);
    const what = code === 0xfffd ? 'U+FFFD (bytes that were not valid UTF-8)' : `a lone surrogate U+${code.toString(16).toUpperCase()}`;
    throw new InvalidTextError(`document text is not valid Unicode: ${what} at offset ${bad}`);
  }
}
