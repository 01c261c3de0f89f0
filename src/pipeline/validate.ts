import type { Document } from '../domain/index.ts';
import { EmptyTextError, InvalidDocumentError, InvalidTextError, TextTooLongError } from './errors.ts';

export interface DocumentLimits {
  maxTextChars: number;
}

/**
 * Index of the first code unit that makes the text invalid Unicode (a lone, unpaired surrogate), or -1.
 * U+FFFD is valid text: invalid UTF-8 bytes are found where the bytes are still at hand (the stream's
 * codec decodes input documents with a fatal UTF-8 decoder), not by looking for the replacement
 * character a lenient decoder would have left, which a valid document may contain too.
 */
export function firstInvalidCodeUnit(text: string): number {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
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
  // The id keys the output record: held to the same standard as the text, so that it cannot turn into
  // a different key (a lone surrogate becomes U+FFFD when encoded as UTF-8).
  const badId = firstInvalidCodeUnit(doc.id);
  if (badId >= 0) throw new InvalidDocumentError(`document id is not valid Unicode: a lone surrogate U+${doc.id.charCodeAt(badId).toString(16).toUpperCase()} at offset ${badId}`);
  if (typeof doc.text !== 'string' || doc.text.trim() === '') throw new EmptyTextError('document text is empty');
  if (doc.text.length > limits.maxTextChars) {
    throw new TextTooLongError(`document text has ${doc.text.length} characters, more than the limit of ${limits.maxTextChars}`);
  }
  const bad = firstInvalidCodeUnit(doc.text);
  if (bad >= 0) {
    throw new InvalidTextError(`document text is not valid Unicode: a lone surrogate U+${doc.text.charCodeAt(bad).toString(16).toUpperCase()} at offset ${bad}`);
  }
}
