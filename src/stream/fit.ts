/**
 * Every record the stage produces fits the size limits it knows (src/stream/limits.ts: the topic's
 * max.message.bytes, which defaults to the broker's message.max.bytes, and the broker's
 * socket.request.max.bytes). The broker checks a whole record batch against max.message.bytes, and
 * kafkajs puts all the records of one send() for one partition into one batch, so both a record and a
 * send() are kept under the limit.
 *
 * The rules, in order:
 *
 * EntityAnnotations (one document's output):
 *   0. the whole record if it fits;
 *   1. else the linked concepts of every entity are left out (`linkedDropped: true`): they come from
 *      the knowledge graph and can be looked up again by entity text;
 *   2. else the entities (without linked concepts) are paged over several records, in order, all keyed
 *      by the document id (so one partition, in order): `part` 0..parts-1, `parts` the count; every
 *      page repeats the document's other fields;
 *   3. an entity that alone does not fit a record is not cut: the document is dead-lettered with
 *      OutputTooLargeError (with the default limits this cannot happen: maxTextChars bounds an entity).
 *
 * DeadLetter (one rejected input record): the whole original if it fits; else a prefix of at most
 * DEAD_LETTER_PREFIX_BYTES of the original value (and of the key when the key alone takes more than
 * an eighth of the limit), with `originalTruncated: true`; originalLength, originalSha256 and the
 * source topic/partition/offset always say which record it was, so the original can be fetched.
 *
 * Sends: records are grouped into send() calls whose records together stay under the limit.
 */
import type { Message } from 'kafkajs';
import { OutputTooLargeError } from '../pipeline/errors.ts';
import type { DeadLetterRecord, EntityAnnotationsRecord } from './codecs.ts';

/**
 * Bytes a record costs in a v2 record batch on top of its key and value: length, attributes, timestamp
 * and offset deltas, key and value lengths and the header count are at most ~32 bytes; twice that for room.
 */
export const RECORD_OVERHEAD_BYTES = 64;
/** Record batch header (61 bytes), log overhead (12) and produce request framing, with room to spare. */
export const BATCH_OVERHEAD_BYTES = 512;
/** The most of an original record value a truncated dead letter keeps (enough to see what it was). */
export const DEAD_LETTER_PREFIX_BYTES = 64 * 1024;

function keyBytes(key: Buffer | string | null | undefined): number {
  if (key === null || key === undefined) return 0;
  return typeof key === 'string' ? Buffer.byteLength(key) : key.length;
}

/** What one record costs in a batch. */
export function recordCost(m: { key?: Buffer | string | null; value: Buffer | string | null }): number {
  return keyBytes(m.key) + keyBytes(m.value) + RECORD_OVERHEAD_BYTES;
}

/** The most key + value bytes one record may have on a topic whose record batches are limited to `maxMessageBytes`. */
export function recordBudget(maxMessageBytes: number): number {
  return maxMessageBytes - BATCH_OVERHEAD_BYTES - RECORD_OVERHEAD_BYTES;
}

export interface FittedAnnotations {
  /** Encoded records, in order (part 0 first). */
  values: Buffer[];
  linkedDropped: boolean;
}

/**
 * The encoded EntityAnnotations record(s) of one document, by the rules above.
 * Throws OutputTooLargeError when one entity alone does not fit.
 */
export function fitAnnotations(
  record: EntityAnnotationsRecord,
  encode: (r: EntityAnnotationsRecord) => Buffer,
  maxMessageBytes: number,
): FittedAnnotations {
  const budget = recordBudget(maxMessageBytes) - Buffer.byteLength(record.documentId);
  const whole = encode({ ...record, linkedDropped: false, part: 0, parts: 1 });
  if (whole.length <= budget) return { values: [whole], linkedDropped: false };

  const entities = record.entities.map((e) => ({ ...e, linked: [] }));
  const unlinked: EntityAnnotationsRecord = { ...record, entities, linkedDropped: true, part: 0, parts: 1 };
  const one = encode(unlinked);
  if (one.length <= budget) return { values: [one], linkedDropped: true };

  // Page sizes from each entity's encoded size: a page is the record without entities (with the
  // widest part/parts varints) plus the array's block count plus its entities.
  const base = encode({ ...unlinked, entities: [], part: 2 ** 30, parts: 2 ** 30 }).length + 10;
  const emptyArray = encode({ ...unlinked, entities: [] }).length;
  const pages: EntityAnnotationsRecord['entities'][] = [];
  let page: EntityAnnotationsRecord['entities'] = [];
  let size = base;
  for (const e of entities) {
    // One entity in the array costs its body plus one byte of block count over the empty array.
    const cost = encode({ ...unlinked, entities: [e] }).length - emptyArray;
    if (base + cost > budget) {
      throw new OutputTooLargeError(`one entity (${e.end - e.start} characters) does not fit a record of at most ${maxMessageBytes} bytes`);
    }
    if (page.length > 0 && size + cost > budget) {
      pages.push(page);
      page = [];
      size = base;
    }
    page.push(e);
    size += cost;
  }
  if (page.length > 0) pages.push(page);
  const values = pages.map((p, part) => encode({ ...unlinked, entities: p, part, parts: pages.length }));
  // The estimate is an upper bound; checked anyway, since a record over the limit would stall the stream.
  const over = values.find((v) => v.length > budget);
  if (over) throw new OutputTooLargeError(`a page of ${over.length} bytes does not fit a record of at most ${maxMessageBytes} bytes`);
  return { values, linkedDropped: true };
}

export interface FittedDeadLetter {
  key: Buffer | null;
  value: Buffer;
  truncated: boolean;
}

/** The encoded dead letter, its original cut to a prefix when the whole would not fit (rules above). */
export function fitDeadLetter(record: DeadLetterRecord, key: Buffer | null, encode: (r: DeadLetterRecord) => Buffer, maxMessageBytes: number): FittedDeadLetter {
  const budget = recordBudget(maxMessageBytes);
  const whole = encode(record);
  if (whole.length + keyBytes(key) <= budget) return { key, value: whole, truncated: false };
  const keyLimit = Math.floor(maxMessageBytes / 8);
  const shell = truncatedDeadLetter(record, key, encode, 0, keyLimit);
  // 10 bytes for the length varint of a non-empty original.
  const room = budget - keyBytes(shell.key) - shell.value.length - 10;
  if (room < 0) throw new OutputTooLargeError(`a dead letter without its original does not fit a record of at most ${maxMessageBytes} bytes`);
  return truncatedDeadLetter(record, key, encode, Math.min(room, DEAD_LETTER_PREFIX_BYTES), keyLimit);
}

/** The dead letter with at most `prefixBytes` of the original value and `keyBytesMax` of the key (record key and originalKey), flagged originalTruncated. */
export function truncatedDeadLetter(record: DeadLetterRecord, key: Buffer | null, encode: (r: DeadLetterRecord) => Buffer, prefixBytes: number, keyBytesMax: number): FittedDeadLetter {
  const cut = (b: Buffer | null) => (b && b.length > keyBytesMax ? b.subarray(0, keyBytesMax) : b);
  const value = encode({ ...record, original: record.original.subarray(0, prefixBytes), originalKey: cut(record.originalKey), originalTruncated: true });
  return { key: cut(key), value, truncated: true };
}

/** Groups a topic's records into send() calls whose records together stay under the limit (a record over it goes alone). */
export function chunkSends(messages: readonly Message[], maxMessageBytes: number): Message[][] {
  const limit = maxMessageBytes - BATCH_OVERHEAD_BYTES;
  const chunks: Message[][] = [];
  let current: Message[] = [];
  let size = 0;
  for (const m of messages) {
    const cost = recordCost({ key: m.key ?? null, value: m.value });
    if (current.length > 0 && size + cost > limit) {
      chunks.push(current);
      current = [];
      size = 0;
    }
    current.push(m);
    size += cost;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}
