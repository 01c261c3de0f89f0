import { test } from 'node:test';
import assert from 'node:assert/strict';
import { joinPieceTags, pipelineSegments } from '../../../src/cli/commands/eval.ts';
import type { NerSentence } from '../../../src/train/datasets.ts';

function sentence(chars: string[], labels?: string[]): NerSentence {
  return { chars, text: chars.join(''), labels: labels ?? chars.map(() => 'O'), repaired: [] };
}

test('pipelineSegments cuts a dataset sentence where the stage cuts a document, on its characters', () => {
  const s = sentence(Array.from('头痛。发热；无咳嗽'), ['B-Symptom', 'I-Symptom', 'O', 'B-Symptom', 'I-Symptom', 'O', 'O', 'B-Symptom', 'I-Symptom']);
  const whole = sentence(Array.from('无咳嗽'));
  const seg = pipelineSegments([s, whole]);
  assert.deepEqual(
    seg.pieces.map((p) => p.text),
    ['头痛。', '发热；', '无咳嗽', '无咳嗽'],
  );
  assert.deepEqual(seg.origin, [
    { sentence: 0, char: 0 },
    { sentence: 0, char: 3 },
    { sentence: 0, char: 6 },
    { sentence: 1, char: 0 },
  ]);
  assert.deepEqual(seg.cut, [true, false]);
  assert.deepEqual(seg.pieces[1].labels, ['B-Symptom', 'I-Symptom', 'O']);
  // Joining the pieces' own tags gives the sentences' tags back.
  assert.deepEqual(
    joinPieceTags([s, whole], seg, seg.pieces.map((p) => p.labels)),
    [s.labels, whole.labels],
  );
});

test('pipelineSegments: closing marks stay with their sentence, multi-unit characters stay whole, a cut entity starts with B-', () => {
  // "12" is one character of two code units; the entity 好！ is cut after the mark by the segmentation.
  const s = sentence(['12', '好', '！', '”', '再', '见'], ['O', 'B-A', 'I-A', 'I-A', 'I-A', 'O']);
  const seg = pipelineSegments([s]);
  assert.deepEqual(
    seg.pieces.map((p) => p.chars),
    [['12', '好', '！', '”'], ['再', '见']],
  );
  assert.deepEqual(seg.pieces[1].labels, ['B-A', 'O']);
  assert.deepEqual(seg.origin[1], { sentence: 0, char: 4 });
  const joined = joinPieceTags([s], seg, [['O', 'B-A', 'I-A', 'O'], ['B-B', 'O']]);
  assert.deepEqual(joined, [['O', 'B-A', 'I-A', 'O', 'B-B', 'O']]);
});

test('pipelineSegments: white space the stage trims gets O and marks the sentence as cut', () => {
  const s = sentence(['\u3000', '痛', '\u3000'], ['B-A', 'I-A', 'O']);
  const seg = pipelineSegments([s]);
  assert.deepEqual(
    seg.pieces.map((p) => p.chars),
    [['痛']],
  );
  assert.deepEqual(seg.pieces[0].labels, ['B-A']);
  assert.deepEqual(seg.cut, [true]);
  assert.deepEqual(joinPieceTags([s], seg, [['B-B']]), [['O', 'B-B', 'O']]);
});
