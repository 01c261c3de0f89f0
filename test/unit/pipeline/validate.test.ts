import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EmptyTextError, InvalidDocumentError, InvalidTextError, TextTooLongError } from '../../../src/pipeline/errors.ts';
import { firstInvalidCodeUnit, validateDocument } from '../../../src/pipeline/validate.ts';
import { doc } from './fakes.ts';

const limits = { maxTextChars: 20 };

test('accepts ordinary text, including astral characters written as surrogate pairs', () => {
  validateDocument(doc('a', '患者咳嗽𠀀三天。'), limits);
  assert.equal(firstInvalidCodeUnit('a𠀀b'), -1);
});

test('rejects empty, over-long and invalid texts with the right class, never quoting the text', () => {
  assert.throws(() => validateDocument(doc('a', ''), limits), EmptyTextError);
  assert.throws(() => validateDocument(doc('a', '  \n '), limits), EmptyTextError);
  assert.throws(() => validateDocument(doc('a', '咳'.repeat(21)), limits), (e: unknown) => e instanceof TextTooLongError && /21 characters/.test((e as Error).message));
  assert.throws(() => validateDocument(doc('a', '头痛\ud800伴'), limits), (e: unknown) => e instanceof InvalidTextError && /offset 2/.test((e as Error).message) && !(e as Error).message.includes('头痛'));
  assert.throws(() => validateDocument(doc('a', '头痛\udc00'), limits), InvalidTextError);
  assert.throws(() => validateDocument(doc('', '头痛'), limits), InvalidDocumentError);
});

test('a U+FFFD in the text is text (invalid bytes are caught by the input codec, where the bytes are)', () => {
  validateDocument(doc('a', '头痛\ufffd伴发热'), limits);
  assert.equal(firstInvalidCodeUnit('\ufffd'), -1);
});

test('the id is held to the same standard as the text: a lone surrogate is an InvalidDocumentError that does not quote it', () => {
  validateDocument(doc('id-\ufffd-𠀀', '头痛'), limits);
  for (const id of ['PID77-\ud800', '\udc00PID77', 'PID77-\ud83d']) {
    assert.throws(
      () => validateDocument(doc(id, '头痛'), limits),
      (e: unknown) => e instanceof InvalidDocumentError && /lone surrogate/.test((e as Error).message) && !(e as Error).message.includes('PID77'),
      JSON.stringify(id),
    );
  }
});
