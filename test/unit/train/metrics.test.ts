import { test } from 'node:test';
import assert from 'node:assert/strict';
import { evaluateNer, formatEvaluation, kbertSpans, NerEvaluator, prf, spansFromBio } from '../../../src/train/metrics.ts';

const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) < 1e-12, `${what}: ${actual} != ${expected}`);

test('spansFromBio: conlleval reading of valid and invalid sequences', () => {
  assert.deepEqual(spansFromBio(['B-A', 'I-A', 'O', 'B-B']), [
    { start: 0, end: 2, type: 'A' },
    { start: 3, end: 4, type: 'B' },
  ]);
  assert.deepEqual(spansFromBio(['I-A', 'I-A', 'B-B', 'I-A']), [
    { start: 0, end: 2, type: 'A' },
    { start: 2, end: 3, type: 'B' },
    { start: 3, end: 4, type: 'A' },
  ]);
  assert.deepEqual(spansFromBio(['O', 'O']), []);
});

test('kbertSpans: B- opens, any I- continues (type ignored), orphan I- ignored', () => {
  assert.deepEqual(kbertSpans(['I-A', 'I-A', 'O', 'B-A', 'I-B', 'O', 'B-B', 'B-A', 'I-A']), [
    [3, 4],
    [6, 6],
    [7, 8],
  ]);
});

test('hand-computed example: strict, K-BERT, per type and error breakdown', () => {
  // gold spans: A[0,2) B[3,6) A[7,8); predicted: A[0,2) B[3,5) B[7,8)
  const gold = ['B-A', 'I-A', 'O', 'B-B', 'I-B', 'I-B', 'O', 'B-A'];
  const pred = ['B-A', 'I-A', 'O', 'B-B', 'I-B', 'O', 'O', 'B-B'];
  const e = evaluateNer([{ gold, predicted: pred }], ['A', 'B', 'C']);
  assert.deepEqual([e.strict.correct, e.strict.predicted, e.strict.gold], [1, 3, 3]);
  close(e.strict.precision, 1 / 3, 'strict P');
  close(e.strict.f1, 1 / 3, 'strict F1');
  // K-BERT: span only; A[0,1] and [7,7] (type differs) match, [3,4] vs gold [3,5] does not.
  assert.deepEqual([e.kbert.correct, e.kbert.predicted, e.kbert.gold], [2, 3, 3]);
  close(e.kbert.f1, 2 / 3, 'kbert F1');
  close(e.perType.A.precision, 1, 'A P');
  close(e.perType.A.recall, 0.5, 'A R');
  close(e.perType.A.f1, 2 / 3, 'A F1');
  assert.deepEqual(e.perType.B, { precision: 0, recall: 0, f1: 0, correct: 0, predicted: 2, gold: 1 });
  assert.deepEqual(e.perType.C, { precision: 0, recall: 0, f1: 0, correct: 0, predicted: 0, gold: 0 });
  assert.deepEqual(e.confusion, {
    correct: 1,
    typeConfusion: 1,
    boundaryError: 1,
    boundaryAndType: 0,
    spurious: 0,
    missed: 0,
    typePairs: { 'A->B': 1 },
  });
  assert.equal(e.sentences, 1);
  assert.equal(e.tokens, 8);
});

test('K-BERT score reads the file tags (orphan I- is not gold there) while strict reads the repaired ones', () => {
  const kbertGold = ['I-A', 'I-A', 'O', 'B-A', 'I-B', 'O'];
  const gold = ['B-A', 'I-A', 'O', 'B-A', 'B-B', 'O'];
  const predicted = ['B-A', 'I-A', 'O', 'B-A', 'I-A', 'O'];
  const e = evaluateNer([{ gold, predicted, kbertGold }]);
  // K-BERT: gold {[3,4]}, predicted {[0,1], [3,4]} -> P 1/2, R 1, F1 2/3.
  assert.deepEqual([e.kbert.correct, e.kbert.predicted, e.kbert.gold], [1, 2, 1]);
  close(e.kbert.f1, 2 / 3, 'kbert F1');
  // Strict: gold A[0,2) A[3,4) B[4,5), predicted A[0,2) A[3,5) -> P 1/2, R 1/3, F1 0.4.
  assert.deepEqual([e.strict.correct, e.strict.predicted, e.strict.gold], [1, 2, 3]);
  close(e.strict.f1, 0.4, 'strict F1');
  assert.equal(e.confusion.boundaryError, 1);
  assert.equal(e.confusion.missed, 0);
});

test('spurious, missed and boundary+type errors; totals accumulate over sentences', () => {
  const ev = new NerEvaluator();
  ev.add(['O', 'O', 'O'], ['O', 'B-A', 'O']); // spurious
  ev.add(['B-A', 'I-A', 'O'], ['O', 'O', 'O']); // missed
  ev.add(['B-A', 'I-A', 'O'], ['O', 'B-B', 'I-B']); // overlaps only a gold of another type
  const e = ev.result();
  assert.equal(e.sentences, 3);
  assert.deepEqual([e.confusion.spurious, e.confusion.missed, e.confusion.boundaryAndType], [1, 1, 1]);
  assert.deepEqual([e.strict.correct, e.strict.predicted, e.strict.gold], [0, 2, 2]);
  assert.equal(e.strict.f1, 0);
  assert.throws(() => ev.add(['O'], ['O', 'O']), RangeError);
});

test('prf on a typical case and division by zero', () => {
  const m = prf(90, 100, 120);
  close(m.precision, 0.9, 'P');
  close(m.recall, 0.75, 'R');
  close(m.f1, (2 * 0.9 * 0.75) / 1.65, 'F1');
  assert.deepEqual(prf(0, 0, 0), { precision: 0, recall: 0, f1: 0, correct: 0, predicted: 0, gold: 0 });
});

test('formatEvaluation prints both scores, per-type lines with Chinese names and the confusions', () => {
  const e = evaluateNer([{ gold: ['B-A', 'O', 'B-A'], predicted: ['B-A', 'O', 'B-B'] }]);
  const text = formatEvaluation(e, { A: '甲' });
  assert.match(text, /strict \(span \+ type\)\s+P  50\.00  R  50\.00  F1  50\.00/);
  assert.match(text, /K-BERT \(span only\)\s+P 100\.00  R 100\.00  F1 100\.00/);
  assert.match(text, /A 甲/);
  assert.match(text, /confused gold->predicted: A->B 1/);
});
