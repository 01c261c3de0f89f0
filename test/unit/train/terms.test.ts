import { test } from 'node:test';
import assert from 'node:assert/strict';
import { collectTerms, dropTerms, termsToSpo, TERM_RELATION } from '../../../src/train/terms.ts';
import type { NerSentence } from '../../../src/train/datasets.ts';

function sentence(text: string, labels: string[]): NerSentence {
  return { chars: [...text], text, labels, repaired: [] };
}

test('collectTerms: each surface with its most frequent type; ties go to the type listed first', () => {
  const s = [
    sentence('头痛伴头晕', ['B-Symptom', 'I-Symptom', 'O', 'B-Symptom', 'I-Symptom']),
    sentence('头痛', ['B-Disease', 'I-Disease']),
    sentence('头痛腹部', ['B-Symptom', 'I-Symptom', 'B-BodyPart', 'I-BodyPart']),
    sentence('腹部', ['B-Disease', 'I-Disease']),
  ];
  const terms = collectTerms(s, ['BodyPart', 'Symptom', 'Disease']);
  assert.deepEqual(Object.fromEntries(terms), { 头痛: 'Symptom', 头晕: 'Symptom', 腹部: 'BodyPart' });
});

test('dropTerms: a seeded share, the same for the same seed, different for another', () => {
  const terms = new Map(Array.from({ length: 1000 }, (_, i) => [`词${i}`, 'Symptom']));
  const a = dropTerms(terms, 0.3, 7);
  assert.deepEqual([...a.keys()], [...dropTerms(terms, 0.3, 7).keys()]);
  assert.notDeepEqual([...a.keys()], [...dropTerms(terms, 0.3, 8).keys()]);
  assert.ok(Math.abs(a.size - 700) < 50, `kept ${a.size}`);
  assert.equal(dropTerms(terms, 0, 1).size, 1000);
  assert.throws(() => dropTerms(terms, 1, 1), RangeError);
});

test('termsToSpo: one sorted triple per surface with the Chinese type name', () => {
  const spo = termsToSpo(new Map([['腹部', 'BodyPart'], ['头痛', 'Symptom']]));
  assert.equal(spo, `头痛\t${TERM_RELATION}\t症状\n腹部\t${TERM_RELATION}\t部位\n`);
  assert.equal(termsToSpo(new Map()), '');
});
