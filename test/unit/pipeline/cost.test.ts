import assert from 'node:assert/strict';
import { test } from 'node:test';
import { SENTENCE_COST, documentCost } from '../../../src/pipeline/cost.ts';

test('a document costs its characters plus a fixed amount per sentence', () => {
  assert.equal(documentCost('头痛'), 2 + SENTENCE_COST);
  assert.equal(documentCost('头痛。发热。'), 6 + 3 * SENTENCE_COST);
  // A run of terminators and line breaks ends one sentence.
  assert.equal(documentCost('头痛。。！\n\n发热'), 9 + 2 * SENTENCE_COST);
  // 8,600 characters of 痛。 cost far more than 8,600 characters of prose with a sentence every 30.
  const dense = documentCost('痛。'.repeat(4300));
  const prose = documentCost(`${'患者主因头部外伤出血伴头昏三点五小时入院既往体'}。`.repeat(344));
  assert.ok(dense > 5 * prose, `${dense} vs ${prose}`);
  assert.ok(dense >= 20_000, 'over the heavy lane\'s default threshold');
  assert.ok(prose < 20_000, 'under it');
});
