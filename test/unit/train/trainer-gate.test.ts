import assert from 'node:assert/strict';
import { test } from 'node:test';
import { prf } from '../../../src/train/metrics.ts';
import { decidePromotion, nextVersionName } from '../../../src/train/promotion.ts';
import type { GateInput } from '../../../src/train/promotion.ts';

/** Scores from counts: prf(correct, predicted, gold). */
function scores(champion: [number, number, number], challenger: [number, number, number], sentences = 10) {
  return { champion: prf(...champion), challenger: prf(...challenger), sentences };
}

test('equal figures promote (at least as good); the reasons carry the figures', () => {
  const input: GateInput = { gold: scores([80, 100, 100], [80, 100, 100], 939), holdout: scores([8, 10, 10], [8, 10, 10], 12) };
  const d = decidePromotion(input);
  assert.equal(d.promote, true);
  assert.deepEqual(d.reasons, ['gold: challenger F1 80.00 >= champion 80.00 (939 sentences)', 'holdout: challenger F1 80.00 >= champion 80.00 (12 sentences)']);
});

test('one entity fewer on the gold set refuses, even with a better holdout', () => {
  // Gold: 800/1000 vs 799/1000 correct (F1 0.8 vs 0.799); holdout: 9/10 vs 7/10.
  const d = decidePromotion({ gold: scores([800, 1000, 1000], [799, 1000, 1000]), holdout: scores([7, 10, 10], [9, 10, 10]) });
  assert.equal(d.promote, false);
  assert.match(d.reasons[0], /^gold: challenger F1 79\.90 < champion 80\.00/);
  assert.match(d.reasons[1], /^holdout: challenger F1 90\.00 >= champion 70\.00/);
});

test('a worse holdout refuses, even with a better gold set', () => {
  const d = decidePromotion({ gold: scores([80, 100, 100], [90, 100, 100]), holdout: scores([9, 10, 10], [8, 10, 10]) });
  assert.equal(d.promote, false);
  assert.match(d.reasons[1], /^holdout: challenger F1 80\.00 < champion 90\.00/);
});

test('better on both promotes; the margin asks for a gain or tolerates a loss', () => {
  const input = { gold: scores([80, 100, 100], [85, 100, 100]), holdout: scores([5, 10, 10], [6, 10, 10]) };
  assert.equal(decidePromotion(input).promote, true);
  // F1 cannot rise by more than 1: an impossible margin always refuses...
  const impossible = decidePromotion(input, 1.01);
  assert.equal(impossible.promote, false);
  assert.match(impossible.reasons[0], /^gold: challenger F1 85\.00 < champion 80\.00 \+ 101\.00/);
  // ...a gain of 5 points on both passes a margin of 0.05 only where it is reached (holdout gains 10).
  assert.equal(decidePromotion(input, 0.05).promote, true);
  assert.equal(decidePromotion(input, 0.0501).promote, false);
  // A margin of -1 promotes whatever the figures.
  const lenient = decidePromotion({ gold: scores([90, 100, 100], [0, 0, 100]), holdout: scores([9, 10, 10], [0, 5, 10]) }, -1);
  assert.equal(lenient.promote, true);
  assert.match(lenient.reasons[0], /^gold: challenger F1 0\.00 >= champion 90\.00 - 100\.00/);
});

test('an empty holdout is not compared; an empty gold set refuses', () => {
  const noHoldout = decidePromotion({ gold: scores([5, 10, 10], [5, 10, 10]), holdout: scores([0, 0, 0], [0, 0, 0], 0) });
  assert.equal(noHoldout.promote, true);
  assert.equal(noHoldout.reasons[1], 'holdout: empty, not compared');
  const noGold = decidePromotion({ gold: scores([0, 0, 0], [0, 0, 0], 0), holdout: scores([1, 2, 2], [2, 2, 2]) });
  assert.equal(noGold.promote, false);
  assert.equal(noGold.reasons[0], 'gold: no sentences to compare on; refusing');
});

test('versions: the patch number goes up, a name without a version counts as 1.0.0, taken names are skipped', () => {
  assert.equal(nextVersionName('rmbert-medical'), 'rmbert-medical-1.0.1');
  assert.equal(nextVersionName('rmbert-medical-1.0.1'), 'rmbert-medical-1.0.2');
  assert.equal(nextVersionName('rmbert-medical-2.3.9'), 'rmbert-medical-2.3.10');
  const taken = new Set(['rmbert-medical-1.0.4', 'rmbert-medical-1.0.5']);
  assert.equal(nextVersionName('rmbert-medical-1.0.3', (n) => taken.has(n)), 'rmbert-medical-1.0.6');
});
