import assert from 'node:assert/strict';
import { test } from 'node:test';
import { segmentSentences } from '../../../src/pipeline/segment.ts';
import { FeedbackBuffer, feedbackProblems, feedbackToSentences, isHeldOut } from '../../../src/train/feedback.ts';
import type { FeedbackDocument, GoldSpan } from '../../../src/train/feedback.ts';

const segment = (text: string) => segmentSentences('', text);
const TYPES = new Set(['BodyPart', 'Symptom', 'Disease', 'Examine', 'Cure']);
const RULES = { types: TYPES, maxTextChars: 1000 };

function span(text: string, piece: string, type: string, from = 0): GoldSpan {
  const start = text.indexOf(piece, from);
  assert.ok(start >= 0, `${piece} not in text`);
  return { start, end: start + piece.length, text: piece, type };
}

function doc(text: string, entities: GoldSpan[], over: Partial<FeedbackDocument> = {}): FeedbackDocument {
  return { documentId: 'doc-1', text, entities, createdAt: 1000, ...over };
}

test('gold spans become character-level BIO tags, one sentence per sentence of the stage', () => {
  const text = '患者头痛三天。右踝肿胀，行X线检查。';
  const f = doc(text, [span(text, '头痛', 'Symptom'), span(text, '右踝', 'BodyPart'), span(text, 'X线检查', 'Examine')]);
  const sentences = feedbackToSentences(f, segment);
  assert.equal(sentences.length, 2);
  assert.equal(sentences[0].text, '患者头痛三天。');
  assert.deepEqual(sentences[0].labels, ['O', 'O', 'B-Symptom', 'I-Symptom', 'O', 'O', 'O']);
  assert.equal(sentences[1].text, '右踝肿胀，行X线检查。');
  assert.deepEqual(sentences[1].labels, ['B-BodyPart', 'I-BodyPart', 'O', 'O', 'O', 'O', 'B-Examine', 'I-Examine', 'I-Examine', 'I-Examine', 'O']);
  for (const s of sentences) {
    assert.equal(s.chars.join(''), s.text);
    assert.equal(s.chars.length, s.labels.length);
    assert.deepEqual(s.repaired, []);
  }
});

test('an entity that straddles a sentence end keeps both sentences together; white space between sentences is left out', () => {
  const text = '头痛。  伴恶心。另起一句。';
  // A (wrong, but legal) gold span over the full stop: the two sentences become one unit.
  const f = doc(text, [{ start: 1, end: 6, text: text.slice(1, 6), type: 'Symptom' }]);
  const sentences = feedbackToSentences(f, segment);
  assert.deepEqual(
    sentences.map((s) => s.text),
    ['头痛。  伴恶心。', '另起一句。'],
  );
  assert.deepEqual(sentences[0].labels, ['O', 'B-Symptom', 'I-Symptom', 'I-Symptom', 'I-Symptom', 'I-Symptom', 'O', 'O', 'O']);
  assert.deepEqual(sentences[1].labels, ['O', 'O', 'O', 'O', 'O']);
});

test('a character outside the BMP is one character with one tag; offsets are UTF-16 code units', () => {
  const text = '𠮷痛加重';
  assert.equal(text.length, 5);
  const f = doc(text, [{ start: 0, end: 3, text: '𠮷痛', type: 'Symptom' }]);
  const [s] = feedbackToSentences(f, segment);
  assert.deepEqual(s.chars, ['𠮷', '痛', '加', '重']);
  assert.deepEqual(s.labels, ['B-Symptom', 'I-Symptom', 'O', 'O']);
});

test('a document without entities is all O; exact duplicate entities count once', () => {
  const text = '无明显不适。';
  assert.deepEqual(feedbackToSentences(doc(text, []), segment)[0].labels, ['O', 'O', 'O', 'O', 'O', 'O']);
  const t2 = '咳嗽。';
  const e = span(t2, '咳嗽', 'Symptom');
  const f = doc(t2, [e, { ...e }]);
  assert.deepEqual(feedbackProblems(f, RULES), []);
  assert.deepEqual(feedbackToSentences(f, segment)[0].labels, ['B-Symptom', 'I-Symptom', 'O']);
});

test('unusable feedback: every problem is named, and no message repeats the document text', () => {
  const text = '患者左膝疼痛。';
  const cases: [string, FeedbackDocument, RegExp][] = [
    ['empty text', doc('   ', []), /text is empty/],
    ['empty id', doc(text, [], { documentId: '' }), /documentId is empty/],
    ['span past the end', doc(text, [{ start: 5, end: 9, text: 'x', type: 'Symptom' }]), /span \[5, 9\) is not inside the text \(length 7\)/],
    ['empty span', doc(text, [{ start: 3, end: 3, text: '', type: 'Symptom' }]), /is not inside the text .* or is empty/],
    ['negative start', doc(text, [{ start: -1, end: 2, text: 'x', type: 'Symptom' }]), /not inside the text/],
    ['text mismatch', doc(text, [{ start: 2, end: 4, text: '右膝', type: 'BodyPart' }]), /entity 1: its text differs from the document text at \[2, 4\)/],
    ['unknown type', doc(text, [{ ...span(text, '左膝', 'Organ') }]), /entity 1: unknown type "Organ"/],
    ['overlap', doc(text, [span(text, '左膝疼痛', 'Symptom'), span(text, '左膝', 'BodyPart')]), /entities \[2, 4\) and \[2, 6\) overlap|entities \[2, 6\) and \[2, 4\) overlap/],
    ['too long', doc('咳'.repeat(1001), []), /1001 characters, more than the 1000 accepted/],
    ['half a surrogate pair', doc('𠮷痛', [{ start: 1, end: 3, text: '𠮷痛'.slice(1, 3), type: 'Symptom' }]), /cuts a character in half/],
    ['unpaired surrogate', doc('咳\ud800嗽', []), /unpaired surrogate/],
  ];
  for (const [name, f, pattern] of cases) {
    const problems = feedbackProblems(f, RULES);
    assert.ok(problems.some((p) => pattern.test(p)), `${name}: ${JSON.stringify(problems)}`);
    for (const p of problems) {
      assert.ok(!p.includes('疼痛') && !p.includes('患者') && !p.includes('𠮷'), `${name}: a message repeats document text: ${p}`);
    }
  }
  assert.deepEqual(feedbackProblems(doc(text, [span(text, '左膝', 'BodyPart'), span(text, '疼痛', 'Symptom')]), RULES), []);
});

test('holdout: a stable hash of the document id picks about the requested share', () => {
  const ids = Array.from({ length: 20_000 }, (_, i) => `emr-${i}`);
  const held = ids.filter((id) => isHeldOut(id, 10));
  const share = held.length / ids.length;
  assert.ok(share > 0.09 && share < 0.11, `share ${share}`);
  // Deterministic: the same ids every time, and a larger percentage keeps every smaller one's ids.
  assert.deepEqual(ids.filter((id) => isHeldOut(id, 10)), held);
  const wider = new Set(ids.filter((id) => isHeldOut(id, 20)));
  assert.ok(held.every((id) => wider.has(id)));
  assert.equal(ids.filter((id) => isHeldOut(id, 0)).length, 0);
  // Fixed buckets (first 32 bits of sha256, mod 100), so a change of the hash, which would move
  // documents between training and holdout, is caught: a 10, b 66, c 3, d 63, h 26.
  assert.deepEqual(
    ['a', 'b', 'c', 'd', 'h'].map((id) => isHeldOut(id, 11)),
    [true, false, true, false, false],
  );
  assert.equal(isHeldOut('a', 10), false);
  assert.equal(isHeldOut('h', 27), true);
});

function pos(partition: number, offset: number) {
  return { partition, offset: String(offset) };
}

test('buffer: one entry per document, the latest correction wins (createdAt, then offset)', () => {
  const b = new FeedbackBuffer(0);
  const v1 = doc('咳嗽。', [], { documentId: 'A', createdAt: 100 });
  const v2 = doc('咳嗽。', [span('咳嗽。', '咳嗽', 'Symptom')], { documentId: 'A', createdAt: 200 });
  assert.equal(b.add(v1, pos(0, 5), 1), 'added');
  assert.equal(b.add(v2, pos(0, 9), 2), 'replaced');
  // An older correction read later (another partition's lag, a re-send) does not win.
  assert.equal(b.add(v1, pos(0, 12), 3), 'stale');
  // The same record read again after a rebalance changes nothing.
  assert.equal(b.add(v2, pos(0, 9), 4), 'duplicate');
  // Same createdAt: the one read later wins.
  const v3 = doc('咳嗽。', [], { documentId: 'A', createdAt: 200 });
  assert.equal(b.add(v3, pos(0, 13), 5), 'replaced');
  b.add(doc('头痛。', [], { documentId: 'B', createdAt: 50 }), pos(1, 0), 6);
  assert.equal(b.trainingCount, 2);
  const batch = b.take();
  assert.deepEqual(
    batch.training.map((e) => [e.document.documentId, e.position.offset]),
    [
      ['A', '13'],
      ['B', '0'],
    ],
  );
  assert.equal(batch.superseded, 3);
  // Positions: the next offset after the highest read, per partition.
  assert.deepEqual([...batch.positions], [
    [0, 14n],
    [1, 1n],
  ]);
  // The document keeps the time it first arrived (the round timer cannot be starved by corrections).
  assert.equal(batch.training[0].receivedAt, 1);
  assert.equal(b.size, 0);
  assert.equal(b.hasPositions, false);
});

test('buffer: held-out documents and rejections are kept apart; a failed round is put back under newer records', () => {
  const b = new FeedbackBuffer<string>(10);
  const ids = Array.from({ length: 60 }, (_, i) => `doc-${i}`);
  ids.forEach((id, i) => b.add(doc('咳嗽。', [], { documentId: id }), pos(0, i), i));
  const heldIds = ids.filter((id) => isHeldOut(id, 10));
  assert.ok(heldIds.length > 0 && heldIds.length < ids.length);
  assert.equal(b.heldOutCount, heldIds.length);
  assert.equal(b.trainingCount, ids.length - heldIds.length);
  b.reject({ position: pos(0, 60), errorClass: 'SchemaError', message: 'x', stage: 'decode', raw: 'bytes' });
  b.reject({ position: pos(0, 60), errorClass: 'SchemaError', message: 'x', stage: 'decode', raw: 'bytes' });
  assert.equal(b.rejectedCount, 1);
  assert.equal(b.oldestTrainingAt(), ids.findIndex((id) => !heldIds.includes(id)));

  const batch = b.take();
  assert.equal(batch.heldOut.length, heldIds.length);
  assert.equal(batch.rejections.length, 1);
  assert.deepEqual([...batch.positions], [[0, 61n]]);
  // While the round ran, a newer correction of doc-0 arrived.
  const trainId = ids.find((id) => !heldIds.includes(id))!;
  b.add(doc('咳嗽加重。', [], { documentId: trainId, createdAt: 5000 }), pos(0, 61), 100);
  b.restore(batch);
  const again = b.take();
  assert.equal(again.training.length + again.heldOut.length, ids.length);
  assert.equal(again.training.find((e) => e.document.documentId === trainId)!.document.text, '咳嗽加重。');
  assert.equal(again.rejections.length, 1);
  assert.deepEqual([...again.positions], [[0, 62n]]);
});
