/**
 * Why one document is rejected. Each class is a dead-letter `errorClass` and a metric label, so the
 * set is small and fixed; messages say what is wrong without quoting the text.
 */
import { PoisonRecordError, RmBertError } from '../errors/index.ts';

/** The record decoded but a required field is missing or malformed (e.g. an empty id). */
export class InvalidDocumentError extends PoisonRecordError {}
/** The text is empty or whitespace only. */
export class EmptyTextError extends PoisonRecordError {}
/** The text is longer than the configured limit. */
export class TextTooLongError extends PoisonRecordError {}
/** The text is not valid Unicode: bytes that are not UTF-8 (found by the input codec), or lone surrogates. */
export class InvalidTextError extends PoisonRecordError {}
/** The model failed on this document alone (found by retrying the micro-batch document by document). */
export class InferenceError extends PoisonRecordError {}
/** Segmenting, knowledge injection or entity assembly failed on this document alone. */
export class DocumentProcessingError extends PoisonRecordError {}

/**
 * The document's output cannot be published even after the size rules of src/stream/fit.ts (one
 * entity alone over the topic's message size limit), or the broker refused its records for good
 * (e.g. MESSAGE_TOO_LARGE when the limit could not be read at start); the document is dead-lettered
 * instead, so the stream goes on.
 */
export class OutputTooLargeError extends PoisonRecordError {}

/**
 * The assertion step misbehaved on a document (e.g. answered for the wrong number of entities). Not a
 * dead-letter class: the document is published with its entities unassessed.
 */
export class AssertionStepError extends RmBertError {}

/** Error classes a dead letter can carry; anything else is reported as "Other" in metrics. */
export const DEAD_LETTER_CLASSES = [
  'SchemaError',
  'InvalidDocumentError',
  'EmptyTextError',
  'TextTooLongError',
  'InvalidTextError',
  'InferenceError',
  'DocumentProcessingError',
  'OutputTooLargeError',
] as const;

export function deadLetterClass(error: unknown): string {
  const name = error instanceof Error ? error.name : '';
  return (DEAD_LETTER_CLASSES as readonly string[]).includes(name) ? name : 'Other';
}
