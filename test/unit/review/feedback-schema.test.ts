/**
 * Feedback v2 (an optional, annotator-given assertion per gold entity) is a backward-compatible change:
 * the current codec reads v1 records (the fixture, byte for byte the first published schema) with the
 * assertion null, a v1 reader that learns the v2 writer schema reads v2 records, the trainer's checks
 * and BIO conversion take a v2 record as they took a v1 one, and schemas/WIRE-FORMAT.md's fingerprints
 * are the codecs'.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { SCHEMA_DIR, codecs, createCodec, readSchemaFile, type FeedbackRecord } from '../../../src/stream/codecs.ts';
import { feedbackProblems, feedbackToSentences } from '../../../src/train/feedback.ts';
import { FeedbackStore } from '../../../src/train/feedback-store.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const V1 = path.join(REPO_ROOT, 'test/fixtures/schemas/v1/Feedback.avsc');
const TEXT = '否认高血压。头昏3天。';

function v1Record(): Omit<FeedbackRecord, 'entities'> & { entities: { start: number; end: number; text: string; type: string }[] } {
  return { documentId: 'doc-1', text: TEXT, entities: [{ start: 2, end: 5, text: '高血压', type: 'Disease' }], annotator: 'dr-7', modelVersionSeen: 'm1', createdAt: 1_765_000_000_000 };
}

test('the v1 fixture is the history file, and the current codec reads v1 records with the assertion null', () => {
  assert.equal(readFileSync(V1, 'utf8'), readFileSync(path.join(SCHEMA_DIR, 'history/Feedback.1.avsc'), 'utf8'));
  const v1 = createCodec<ReturnType<typeof v1Record>>(readSchemaFile(V1));
  assert.equal(v1.fingerprintHex, 'ca18e162e51431fb');
  const read = codecs().feedback.decode(v1.encode(v1Record()));
  assert.deepEqual(JSON.parse(JSON.stringify(read)), { ...v1Record(), entities: [{ start: 2, end: 5, text: '高血压', type: 'Disease', assertion: null }] });
});

test('a v1 reader that learns the v2 schema reads v2 records (the assertion left out)', () => {
  const reader = createCodec<Record<string, unknown>>(readSchemaFile(V1), [readSchemaFile(path.join(SCHEMA_DIR, 'Feedback.avsc'))]);
  const v2: FeedbackRecord = {
    ...v1Record(),
    entities: [
      { start: 2, end: 5, text: '高血压', type: 'Disease', assertion: { polarity: 'absent', certainty: 'certain', temporality: 'current', experiencer: 'patient' } },
      { start: 6, end: 8, text: '头昏', type: 'Symptom' },
    ],
  };
  const bytes = codecs().feedback.encode(v2);
  assert.deepEqual(JSON.parse(JSON.stringify(reader.decode(bytes))).entities, [
    { start: 2, end: 5, text: '高血压', type: 'Disease' },
    { start: 6, end: 8, text: '头昏', type: 'Symptom' },
  ]);
  const back = codecs().feedback.decode(bytes);
  assert.equal(back.entities[0].assertion?.polarity, 'absent');
  assert.equal(back.entities[1].assertion, null);
});

test("the trainer's checks and BIO conversion take a v2 record as they take a v1 one", () => {
  const withAssertion = codecs().feedback.decode(
    codecs().feedback.encode({ ...v1Record(), entities: [{ start: 2, end: 5, text: '高血压', type: 'Disease', assertion: { polarity: 'absent', certainty: 'possible', temporality: 'historical', experiencer: 'other' } }] }),
  );
  const plain = codecs().feedback.decode(createCodec<ReturnType<typeof v1Record>>(readSchemaFile(V1)).encode(v1Record()));
  const rules = { types: new Set(['Disease', 'Symptom']), maxTextChars: 1000 };
  assert.deepEqual(feedbackProblems(withAssertion, rules), []);
  const whole = (text: string) => [{ start: 0, end: text.length }];
  assert.deepEqual(feedbackToSentences(withAssertion, whole), feedbackToSentences(plain, whole));
  assert.deepEqual(feedbackToSentences(withAssertion, whole)[0].labels.slice(0, 6), ['O', 'O', 'B-Disease', 'I-Disease', 'I-Disease', 'O']);
});

test("the trainer's store reads a re-delivered v2 record as unchanged (the assertion is not part of what it keeps)", () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rmbert-feedback-v2-'));
  try {
    const store = FeedbackStore.open(dir, { holdoutPercent: 0 });
    const bytes = codecs().feedback.encode({ ...v1Record(), entities: [{ start: 2, end: 5, text: '高血压', type: 'Disease', assertion: { polarity: 'absent', certainty: 'certain', temporality: 'current', experiencer: 'patient' } }] });
    // As the sidecar hands a decoded record to the store.
    const asDoc = (r: FeedbackRecord) => ({ ...r, modelVersionSeen: r.modelVersionSeen ?? undefined });
    assert.equal(store.upsert(asDoc(codecs().feedback.decode(bytes)), 1).outcome, 'added');
    assert.equal(store.upsert(asDoc(codecs().feedback.decode(bytes)), 2).outcome, 'unchanged');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("schemas/WIRE-FORMAT.md's fingerprints are the codecs'", () => {
  const doc = readFileSync(path.join(SCHEMA_DIR, 'WIRE-FORMAT.md'), 'utf8');
  const c = codecs();
  const want: Record<string, string> = {
    'EmrDocument.avsc': c.emrDocument.fingerprintHex,
    'EntityAnnotations.avsc': c.entityAnnotations.fingerprintHex,
    'Feedback.avsc': c.feedback.fingerprintHex,
    'ModelUpdate.avsc': c.modelUpdate.fingerprintHex,
    'DeadLetter.avsc': c.deadLetter.fingerprintHex,
  };
  for (const [file, fp] of Object.entries(want)) {
    const row = doc.split('\n').find((l) => l.startsWith(`| \`${file}\``));
    assert.ok(row, file);
    assert.match(row, new RegExp(`\\| \`${fp}\``), `${file}: ${fp}`);
  }
  assert.ok(doc.includes(`bytes.fromhex("${c.feedback.fingerprintHex}")`));
});
