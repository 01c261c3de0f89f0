import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { NerSentence } from '../../../src/train/datasets.ts';
import {
  analyseModel,
  DictionaryBaseline,
  formatAnalysis,
  predictionRecord,
  singleCharErrors,
  surfaceRecall,
} from '../../../src/train/baselines.ts';
import { evaluateNer, microF1, pairedBootstrap, quantile, sentenceCounts } from '../../../src/train/metrics.ts';
import type { SentenceCounts } from '../../../src/train/metrics.ts';

const close = (actual: number, expected: number, what: string) => assert.ok(Math.abs(actual - expected) < 1e-12, `${what}: ${actual} != ${expected}`);

/** BIO tags over `n` characters for [start, end, type] entities. */
function tags(n: number, entities: Array<[number, number, string]>): string[] {
  const out = new Array<string>(n).fill('O');
  for (const [s, e, t] of entities) {
    out[s] = `B-${t}`;
    for (let i = s + 1; i < e; i++) out[i] = `I-${t}`;
  }
  return out;
}

/** A sentence of one character per code point (or the given characters), with gold entities. */
function sentence(text: string | string[], entities: Array<[number, number, string]> = []): NerSentence {
  const chars = typeof text === 'string' ? Array.from(text) : text;
  return { chars, text: chars.join(''), labels: tags(chars.length, entities), repaired: [] };
}

const found = (d: DictionaryBaseline, s: NerSentence) => d.entitiesIn(s).map((e) => [e.start, e.end, e.type, e.text]);

test('dictionary: each surface takes its most frequent training type; a tie goes to the type seen first', () => {
  const d = DictionaryBaseline.fromSentences([
    sentence('头痛。', [[0, 2, 'Disease']]),
    sentence('头痛，头痛', [
      [0, 2, 'Symptom'],
      [3, 5, 'Symptom'],
    ]),
    sentence('发热', [[0, 2, 'Symptom']]),
    sentence('发热', [[0, 2, 'Disease']]),
  ]);
  assert.equal(d.surfaces, 2);
  assert.equal(d.entities, 5);
  assert.equal(d.typeOf('头痛'), 'Symptom');
  assert.equal(d.typeOf('发热'), 'Symptom');
  assert.equal(d.typeOf('咳嗽'), undefined);
  assert.deepEqual(found(d, sentence('患者头痛伴发热')), [
    [2, 4, 'Symptom', '头痛'],
    [5, 7, 'Symptom', '发热'],
  ]);
});

test('dictionary: leftmost-longest and non-overlapping', () => {
  const d = DictionaryBaseline.fromSentences([
    sentence('右踝', [[0, 2, 'BodyPart']]),
    sentence('右踝内侧', [[0, 4, 'BodyPart']]),
    sentence('内侧疼痛', [[0, 4, 'Symptom']]),
    sentence('疼痛', [[0, 2, 'Symptom']]),
    sentence('腹部', [[0, 2, 'BodyPart']]),
    sentence('部疼痛感', [[0, 4, 'Symptom']]),
  ]);
  // The longest at the leftmost start wins (右踝内侧 over 右踝), and the later 内侧疼痛 overlaps it.
  assert.deepEqual(found(d, sentence('右踝内侧疼痛')), [
    [0, 4, 'BodyPart', '右踝内侧'],
    [4, 6, 'Symptom', '疼痛'],
  ]);
  // The leftmost start wins even when a later, overlapping surface is longer.
  assert.deepEqual(found(d, sentence('腹部疼痛感')), [
    [0, 2, 'BodyPart', '腹部'],
    [2, 4, 'Symptom', '疼痛'],
  ]);
  assert.deepEqual(d.tag(sentence('右踝内侧疼痛')), ['B-BodyPart', 'I-BodyPart', 'I-BodyPart', 'I-BodyPart', 'B-Symptom', 'I-Symptom']);
});

test('dictionary: exact surfaces only (no case folding) and never inside a character', () => {
  const d = DictionaryBaseline.fromSentences([sentence('P', [[0, 1, 'Examine']]), sentence(['2'], [[0, 1, 'Examine']])]);
  assert.deepEqual(found(d, sentence('nbsp;P')), [[5, 6, 'Examine', 'P']]);
  // "12" is one character of the sentence: the surface "2" cannot match its second half.
  assert.deepEqual(found(d, sentence(['1', '12', '2'])), [[2, 3, 'Examine', '2']]);
});

test('sentenceCounts adds up to the strict score', () => {
  const pairs = [
    { gold: tags(8, [[0, 2, 'A'], [3, 6, 'B'], [7, 8, 'A']]), predicted: tags(8, [[0, 2, 'A'], [3, 5, 'B'], [7, 8, 'B']]) },
    { gold: tags(3, []), predicted: tags(3, [[1, 2, 'A']]) },
  ];
  const counts = pairs.map((p) => sentenceCounts(p.gold, p.predicted));
  assert.deepEqual(counts, [
    { tp: 1, predicted: 3, gold: 3 },
    { tp: 0, predicted: 1, gold: 0 },
  ]);
  const e = evaluateNer(pairs);
  close(microF1(1, 4, 3), e.strict.f1, 'micro F1');
});

test('quantile interpolates linearly between order statistics', () => {
  close(quantile([1, 2, 3, 4], 0.25), 1.75, 'q25');
  close(quantile([1, 2, 3, 4], 0.975), 3.925, 'q97.5');
  close(quantile([5], 0.5), 5, 'single');
});

const perfect = (n: number): SentenceCounts[] => Array.from({ length: n }, () => ({ tp: 2, predicted: 2, gold: 2 }));
const halfRight = (n: number): SentenceCounts[] => Array.from({ length: n }, (_, i) => ({ tp: i % 2, predicted: 2, gold: 2 }));

test('paired bootstrap: identical systems give the interval [0, 0]', () => {
  const a = halfRight(50);
  const r = pairedBootstrap(a, a.map((c) => ({ ...c })));
  assert.deepEqual([r.difference, r.low, r.high, r.aBetter], [0, 0, 0, 0]);
  assert.equal(r.resamples, 1000);
  assert.equal(r.sentences, 50);
});

test('paired bootstrap: a clearly better system has an interval above 0; deterministic per seed', () => {
  const a = perfect(40);
  const b = halfRight(40);
  const r = pairedBootstrap(a, b, { seed: 7 });
  close(r.difference, 1 - 0.25, 'difference');
  assert.ok(r.low > 0.5 && r.low <= r.difference && r.difference <= r.high, `interval [${r.low}, ${r.high}]`);
  assert.equal(r.aBetter, 1);
  assert.deepEqual(pairedBootstrap(a, b, { seed: 7 }), r);
  assert.notDeepEqual(pairedBootstrap(a, b, { seed: 8 }), r);
  // Reversed, the interval is mirrored below 0.
  const back = pairedBootstrap(b, a, { seed: 7 });
  assert.ok(back.high < 0);
  close(back.low, -r.high, 'mirrored low');
  assert.throws(() => pairedBootstrap(a, b.slice(1)), RangeError);
});

test('paired bootstrap resamples sentences, not entities: a noisy, small difference straddles 0', () => {
  // a is right on sentences 0..9, b on 10..19: equal F1, but each resample favours one or the other.
  const a = Array.from({ length: 20 }, (_, i) => ({ tp: i < 10 ? 1 : 0, predicted: 1, gold: 1 }));
  const b = Array.from({ length: 20 }, (_, i) => ({ tp: i >= 10 ? 1 : 0, predicted: 1, gold: 1 }));
  const r = pairedBootstrap(a, b, { resamples: 2000, seed: 3 });
  assert.equal(r.difference, 0);
  assert.ok(r.low < -0.2 && r.high > 0.2, `interval [${r.low}, ${r.high}]`);
  assert.ok(r.aBetter > 0.3 && r.aBetter < 0.6, `aBetter ${r.aBetter}`);
});

test('surfaceRecall: seen means the exact surface is a training entity of any type; found needs span and type', () => {
  const d = DictionaryBaseline.fromSentences([sentence('头痛', [[0, 2, 'Symptom']])]);
  const s = sentence('头痛伴咳嗽，头痛剧烈', [
    [0, 2, 'Disease'],
    [3, 5, 'Symptom'],
    [6, 8, 'Symptom'],
  ]);
  const predicted = [tags(10, [[0, 2, 'Symptom'], [3, 5, 'Symptom'], [6, 7, 'Symptom']])];
  const r = surfaceRecall([s], predicted, (x) => d.has(x));
  // Seen: 头痛 (gold Disease: predicted Symptom, wrong type) and 头痛 at 6 (predicted 头 only): 0 of 2.
  assert.deepEqual(r.seen, { gold: 2, found: 0, recall: 0 });
  assert.deepEqual(r.unseen, { gold: 1, found: 1, recall: 1 });
});

test('singleCharErrors: wrong one-character predictions as shares of predictions, one-character ones and false positives', () => {
  const s = sentence('头痛伴咳，发热', [
    [0, 2, 'Symptom'],
    [3, 4, 'Symptom'],
  ]);
  // 头 (one character, not gold), 咳 (one character, gold), 发热 (two characters, not gold).
  const r = singleCharErrors([s], [tags(7, [[0, 1, 'Symptom'], [3, 4, 'Symptom'], [5, 7, 'Symptom']])]);
  assert.deepEqual([r.predictions, r.falsePositives, r.singleChar, r.singleCharWrong], [3, 2, 2, 1]);
  close(r.shareOfPredictions, 1 / 3, 'of predictions');
  close(r.shareOfSingleChar, 1 / 2, 'of one-character');
  close(r.shareOfFalsePositives, 1 / 2, 'of false positives');
  // A one-character prediction of the wrong type is wrong too.
  assert.equal(singleCharErrors([s], [tags(7, [[3, 4, 'Disease']])]).singleCharWrong, 1);
  assert.deepEqual(singleCharErrors([s], [tags(7, [])]).shareOfSingleChar, 0);
});

test('predictionRecord: UTF-16 offsets into the text, end exclusive, for predictions and gold', () => {
  // 𠀀 is a surrogate pair (2 code units); "12" one character of 2 code units.
  const s = sentence(['𠀀', '痛', '12', '次'], [[2, 4, 'Examine']]);
  const r = predictionRecord(3, s, tags(4, [[0, 2, 'Symptom'], [2, 3, 'Examine']]));
  assert.equal(r.text, '𠀀痛12次');
  assert.deepEqual(r.entities, [
    { start: 0, end: 3, type: 'Symptom', text: '𠀀痛' },
    { start: 3, end: 5, type: 'Examine', text: '12' },
  ]);
  assert.deepEqual(r.gold, [{ start: 3, end: 6, type: 'Examine', text: '12次' }]);
  assert.equal(r.sentence, 3);
  for (const e of [...r.entities, ...r.gold]) assert.equal(r.text.slice(e.start, e.end), e.text);
  assert.deepEqual(JSON.parse(JSON.stringify(r)), r);
});

test('analyseModel: dictionary scores, per-type differences, bootstrap, surfaces; none of them without a training split', () => {
  const train = [sentence('头痛', [[0, 2, 'Symptom']]), sentence('腹部', [[0, 2, 'BodyPart']])];
  const sentences = [sentence('头痛，腹部胀', [[0, 2, 'Symptom'], [3, 5, 'BodyPart'], [5, 6, 'Symptom']]), sentence('咳嗽', [[0, 2, 'Symptom']])];
  const predicted = [tags(6, [[0, 2, 'Symptom'], [5, 6, 'Symptom']]), tags(2, [[0, 2, 'Symptom']])];
  const types = ['Symptom', 'BodyPart'];
  const evaluation = evaluateNer(
    sentences.map((s, i) => ({ gold: s.labels, predicted: predicted[i] })),
    types,
  );
  const a = analyseModel({ sentences, predicted, types, evaluation, train: { source: 'train.tsv', sentences: train } });
  assert.ok(a.baseline && a.bootstrap && a.surfaces);
  // Dictionary: 头痛 and 腹部 found, both right: P 1, R 2/4.
  assert.deepEqual([a.baseline.evaluation.strict.correct, a.baseline.evaluation.strict.predicted, a.baseline.evaluation.strict.gold], [2, 2, 4]);
  assert.deepEqual(a.baseline.train, { source: 'train.tsv', sentences: 2, entities: 2, surfaces: 2 });
  // Model: Symptom 3/3 right, BodyPart missed; dictionary: Symptom 1/3 (P 1), BodyPart 1/1.
  close(a.baseline.perTypeF1Delta.Symptom, 1 - 0.5, 'Symptom delta');
  close(a.baseline.perTypeF1Delta.BodyPart, 0 - 1, 'BodyPart delta');
  close(a.bootstrap.difference, evaluation.strict.f1 - a.baseline.evaluation.strict.f1, 'bootstrap difference');
  assert.deepEqual(a.surfaces.model.seen, { gold: 2, found: 1, recall: 0.5 });
  assert.deepEqual(a.surfaces.dictionary.seen, { gold: 2, found: 2, recall: 1 });
  assert.deepEqual(a.surfaces.model.unseen, { gold: 2, found: 2, recall: 1 });
  assert.equal(a.singleChar.singleChar, 1);
  const text = formatAnalysis(a, evaluation);
  assert.match(text, /dictionary baseline \(2 training surfaces, longest match\): P 100\.00  R 50\.00  F1 66\.67/);
  assert.match(text, /Symptom 100\.00\/50\.00\/\+50\.00, BodyPart 0\.00\/100\.00\/-100\.00/);
  assert.match(text, /paired bootstrap 95\.0% interval \[/);
  assert.match(text, /seen in training: 2, recall model 50\.0% \/ dictionary 100\.0%; unseen: 2, recall model 100\.0% \/ dictionary 0\.0%/);

  const none = analyseModel({ sentences, predicted, types, evaluation, train: null });
  assert.deepEqual([none.baseline, none.bootstrap, none.surfaces], [null, null, null]);
  assert.match(formatAnalysis(none, evaluation), /^one-character predictions: 1, 0 of them wrong/);
});
