import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { OutputTooLargeError } from '../../../src/pipeline/errors.ts';
import { codecs, type DeadLetterRecord, type EntityAnnotationsRecord, type EntityRecord } from '../../../src/stream/codecs.ts';
import { chunkSends, DEAD_LETTER_PREFIX_BYTES, fitAnnotations, fitDeadLetter, recordBudget, recordCost, truncatedDeadLetter } from '../../../src/stream/fit.ts';
import { deadLetter } from '../../../src/stream/records.ts';

const encodeA = (r: EntityAnnotationsRecord) => codecs().entityAnnotations.encode(r);
const encodeD = (r: DeadLetterRecord) => codecs().deadLetter.encode(r);

/** An entity-dense output: one 痛 per two characters, each linked to two concepts. */
function dense(entities: number): EntityAnnotationsRecord {
  const list: EntityRecord[] = Array.from({ length: entities }, (_, i) => ({
    start: 2 * i,
    end: 2 * i + 1,
    text: '痛',
    type: 'Symptom',
    score: 0.5,
    linked: [
      { relation: '类别', object: '症状' },
      { relation: '类别', object: '疾病' },
    ],
  }));
  return {
    documentId: 'dense-1',
    modelVersion: 'm+0123456789ab',
    kgVersion: 'k'.repeat(64),
    engine: 'onnxruntime-cpu',
    entities: list,
    kgDegraded: false,
    truncated: false,
    windowed: false,
    linkedDropped: false,
    part: 0,
    parts: 1,
    timingsMs: { infer: 1 },
    documentCreatedAt: 1,
    annotatedAt: 2,
  };
}

test('rule 0: an output under the limit is one record, unchanged', () => {
  const r = dense(10);
  const fitted = fitAnnotations(r, encodeA, 1_048_588);
  assert.equal(fitted.values.length, 1);
  assert.equal(fitted.linkedDropped, false);
  // Decoding fills the optional assertion field with its default (null: not assessed).
  assert.deepEqual(
    JSON.parse(JSON.stringify(codecs().entityAnnotations.decode(fitted.values[0]).entities)),
    r.entities.map((e) => ({ ...e, assertion: null })),
  );
});

test('rule 1: linked concepts are dropped first, with the flag, when that is enough', () => {
  const r = dense(2000);
  const whole = encodeA(r).length;
  const withoutLinked = encodeA({ ...r, entities: r.entities.map((e) => ({ ...e, linked: [] })) }).length;
  const limit = Math.floor((whole + withoutLinked) / 2) + 600; // between the two sizes, plus the overheads
  const fitted = fitAnnotations(r, encodeA, limit);
  assert.equal(fitted.values.length, 1);
  assert.equal(fitted.linkedDropped, true);
  const back = codecs().entityAnnotations.decode(fitted.values[0]);
  assert.equal(back.linkedDropped, true);
  assert.equal(back.entities.length, 2000);
  assert.ok(back.entities.every((e) => e.linked.length === 0));
});

test('rule 2: entities are paged in order over records that each fit, part/parts numbered, nothing lost', () => {
  const r = dense(4300);
  const limit = 16 * 1024;
  const fitted = fitAnnotations(r, encodeA, limit);
  assert.ok(fitted.values.length > 3, `${fitted.values.length} parts`);
  const pages = fitted.values.map((v) => codecs().entityAnnotations.decode(v));
  pages.forEach((p, i) => {
    assert.equal(p.part, i);
    assert.equal(p.parts, pages.length);
    assert.equal(p.documentId, 'dense-1');
    assert.equal(p.linkedDropped, true);
    assert.ok(recordCost({ key: 'dense-1', value: fitted.values[i] }) <= limit - 512, `page ${i} fits`);
  });
  const all = pages.flatMap((p) => p.entities);
  assert.deepEqual(
    all.map((e) => e.start),
    r.entities.map((e) => e.start),
  );
});

test('rule 3: an entity that alone exceeds the limit is an OutputTooLargeError (the document is dead-lettered)', () => {
  const r = dense(1);
  r.entities[0] = { ...r.entities[0], end: 5000, text: '痛'.repeat(5000) };
  assert.throws(() => fitAnnotations(r, encodeA, 4096), OutputTooLargeError);
});

function deadOf(value: Buffer, key: Buffer | null): DeadLetterRecord {
  return deadLetter({ topic: 'in', partition: 1, offset: '41', key, value }, 'TextTooLongError', 'too long', 'validate', 9);
}

test('a dead letter that fits keeps the whole original, with its length and sha256', () => {
  const original = Buffer.from('abc');
  const fitted = fitDeadLetter(deadOf(original, Buffer.from('k')), Buffer.from('k'), encodeD, 1_048_588);
  assert.equal(fitted.truncated, false);
  const back = codecs().deadLetter.decode(fitted.value);
  assert.deepEqual(back.original, original);
  assert.equal(back.originalTruncated, false);
  assert.equal(back.originalLength, 3);
  assert.equal(back.originalSha256, createHash('sha256').update(original).digest('hex'));
});

test('a dead letter of a record near the limit keeps a bounded prefix, the whole length and sha256, and the source position', () => {
  const limit = 1_048_588;
  const original = Buffer.alloc(limit - 200, 0x61);
  const key = Buffer.from('near-limit');
  const fitted = fitDeadLetter(deadOf(original, key), key, encodeD, limit);
  assert.equal(fitted.truncated, true);
  assert.ok(recordCost({ key: fitted.key, value: fitted.value }) <= limit - 512);
  const back = codecs().deadLetter.decode(fitted.value);
  assert.equal(back.originalTruncated, true);
  assert.equal(back.original.length, DEAD_LETTER_PREFIX_BYTES);
  assert.deepEqual(back.original, original.subarray(0, DEAD_LETTER_PREFIX_BYTES));
  assert.equal(back.originalLength, original.length);
  assert.equal(back.originalSha256, createHash('sha256').update(original).digest('hex'));
  assert.deepEqual([back.sourceTopic, back.sourcePartition, back.sourceOffset], ['in', 1, 41]);
  assert.deepEqual(back.originalKey, key);
});

test('a dead letter under a small limit cuts a long key too and stays under the limit', () => {
  const limit = 8192;
  const key = Buffer.alloc(5000, 0x6b);
  const fitted = fitDeadLetter(deadOf(Buffer.alloc(20_000, 1), key), key, encodeD, limit);
  assert.ok(recordCost({ key: fitted.key, value: fitted.value }) <= limit - 512);
  assert.equal(fitted.key!.length, limit / 8);
  const back = codecs().deadLetter.decode(fitted.value);
  assert.equal(back.originalKey!.length, limit / 8);
  assert.ok(back.original.length > 0 && back.original.length < 20_000);
  assert.equal(recordBudget(limit), limit - 512 - 64);
});

test('truncatedDeadLetter with no room keeps only the fields that say where the original is', () => {
  const fitted = truncatedDeadLetter(deadOf(Buffer.alloc(100, 1), Buffer.from('kk')), Buffer.from('kk'), encodeD, 0, 0);
  const back = codecs().deadLetter.decode(fitted.value);
  assert.equal(back.original.length, 0);
  assert.equal(back.originalKey!.length, 0);
  assert.equal(back.originalLength, 100);
  assert.equal(fitted.key!.length, 0);
});

test('sends are grouped under the limit, in order; a record over it goes alone', () => {
  const m = (n: number) => ({ key: 'k', value: Buffer.alloc(n) });
  const limit = 10_000;
  const messages = [m(3000), m(3000), m(3000), m(3000), m(20_000), m(10)];
  const chunks = chunkSends(messages, limit);
  assert.deepEqual(
    chunks.map((c) => c.map((x) => (x.value as Buffer).length)),
    [[3000, 3000, 3000], [3000], [20_000], [10]],
  );
  for (const c of chunks.filter((c) => c.length > 1)) assert.ok(c.reduce((s, x) => s + recordCost({ key: x.key, value: x.value as Buffer }), 0) <= limit - 512);
});
