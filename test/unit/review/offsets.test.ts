/**
 * The page's span logic (src/review/static/offsets.js, loaded as it is by the browser): UTF-16
 * offsets with surrogate pairs, selections, nudged boundaries, added spans and submission checks.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { addSpan, cells, entityProblems, nextBoundary, normaliseRange, nudge, prevBoundary, splitsPair } from '../../../src/review/static/offsets.js';

// 𠮷 (U+20BB7) is a surrogate pair: two UTF-16 code units, one character.
const TEXT = '患者𠮷高血压3天';

test('boundaries step over a surrogate pair as one character', () => {
  assert.equal(TEXT.length, 9);
  assert.equal(splitsPair(TEXT, 3), true);
  assert.equal(splitsPair(TEXT, 2), false);
  assert.equal(nextBoundary(TEXT, 2), 4);
  assert.equal(prevBoundary(TEXT, 4), 2);
  assert.equal(nextBoundary(TEXT, 0), 1);
  assert.equal(prevBoundary(TEXT, 0), 0);
  assert.equal(nextBoundary(TEXT, TEXT.length), TEXT.length);
  assert.deepEqual(
    cells(TEXT).map((c) => [c.start, c.end, c.ch]),
    [[0, 1, '患'], [1, 2, '者'], [2, 4, '𠮷'], [4, 5, '高'], [5, 6, '血'], [6, 7, '压'], [7, 8, '3'], [8, 9, '天']],
  );
});

test('a selection is widened so that it never splits a pair, in either direction', () => {
  assert.deepEqual(normaliseRange(TEXT, 3, 6), { start: 2, end: 6 });
  assert.deepEqual(normaliseRange(TEXT, 6, 3), { start: 2, end: 6 });
  assert.deepEqual(normaliseRange(TEXT, 1, 3), { start: 1, end: 4 });
  assert.equal(normaliseRange(TEXT, 5, 5), null);
  assert.deepEqual(normaliseRange(TEXT, -4, 99), { start: 0, end: 9 });
});

test('nudging the end of 高血 by one gives 高血压; no move into a neighbour, past the text or to an empty span', () => {
  const ents = [
    { start: 4, end: 6, text: '高血', type: 'Disease' },
    { start: 8, end: 9, text: '天', type: 'Symptom' },
  ];
  const moved = nudge(TEXT, ents, 0, 'end', 1)!;
  assert.deepEqual([moved[0].start, moved[0].end, moved[0].text], [4, 7, '高血压']);
  assert.equal(moved[1], ents[1]);
  assert.equal(nudge(TEXT, moved, 0, 'end', 1)!.at(0)!.end, 8);
  assert.equal(nudge(TEXT, [{ ...ents[0], end: 8 }, ents[1]], 0, 'end', 1), null, 'would overlap 天');
  assert.equal(nudge(TEXT, ents, 1, 'end', 1), null, 'past the end of the text');
  assert.equal(nudge(TEXT, ents, 1, 'start', 1), null, 'would empty the span');
  const left = nudge(TEXT, ents, 0, 'start', -1)!;
  assert.deepEqual([left[0].start, left[0].text], [2, '𠮷高血'], 'the start moves over the whole pair');
});

test('an added span replaces the entities it overlaps and keeps the list sorted', () => {
  const ents = [
    { start: 4, end: 5, text: '高', type: 'Symptom' },
    { start: 5, end: 6, text: '血', type: 'Symptom' },
    { start: 0, end: 2, text: '患者', type: 'BodyPart' },
  ].sort((a, b) => a.start - b.start);
  const r = addSpan(TEXT, ents, 4, 7, 'Disease')!;
  assert.deepEqual(r.entities.map((e) => [e.start, e.end, e.text, e.type]), [[0, 2, '患者', 'BodyPart'], [4, 7, '高血压', 'Disease']]);
  assert.equal(r.index, 1);
  assert.equal(addSpan(TEXT, ents, 5, 5, 'Disease'), null);
  assert.deepEqual(addSpan(TEXT, [], 3, 4, 'Disease')!.entities[0].text, '𠮷', 'widened over the pair');
});

test('submitted lists are checked: range, integers, pairs, types, overlaps, count', () => {
  const types = ['Disease', 'Symptom'];
  assert.deepEqual(entityProblems(TEXT, [{ start: 4, end: 7, type: 'Disease' }], types, 10), []);
  assert.deepEqual(entityProblems(TEXT, [], types, 10), []);
  assert.match(entityProblems(TEXT, [{ start: 3, end: 7, type: 'Disease' }], types, 10).join(), /surrogate pair/);
  assert.match(entityProblems(TEXT, [{ start: 4, end: 12, type: 'Disease' }], types, 10).join(), /not a non-empty range/);
  assert.match(entityProblems(TEXT, [{ start: 4, end: 4, type: 'Disease' }], types, 10).join(), /not a non-empty range/);
  assert.match(entityProblems(TEXT, [{ start: 4.5, end: 6, type: 'Disease' }], types, 10).join(), /integers/);
  assert.match(entityProblems(TEXT, [{ start: 4, end: 6, type: 'Drug' }], types, 10).join(), /type is not one of/);
  assert.match(entityProblems(TEXT, [{ start: 4, end: 6, type: 'Disease' }, { start: 5, end: 7, type: 'Symptom' }], types, 10).join(), /overlap/);
  assert.match(entityProblems(TEXT, 'x', types, 10).join(), /must be a list/);
  const negated = { polarity: 'absent', certainty: 'certain', temporality: 'current', experiencer: 'patient' };
  assert.deepEqual(entityProblems(TEXT, [{ start: 4, end: 7, type: 'Disease', assertion: negated }, { start: 0, end: 2, type: 'Disease', assertion: null }], types, 10), []);
  assert.match(entityProblems(TEXT, [{ start: 4, end: 7, type: 'Disease', assertion: { ...negated, experiencer: 'family' } }], types, 10).join(), /assertion.experiencer must be one of patient, other/);
  assert.match(entityProblems(TEXT, [{ start: 4, end: 7, type: 'Disease', assertion: 'absent' }], types, 10).join(), /assertion must be an object or null/);
  assert.match(entityProblems(TEXT, [{ start: 0, end: 1, type: 'Disease' }, { start: 1, end: 2, type: 'Disease' }], types, 1).join(), /more than 1/);
  // No problem message quotes the text.
  for (const p of entityProblems(TEXT, [{ start: 3, end: 7, type: 'Drug' }], types, 10)) assert.ok(!p.includes('高'), p);
});
