import assert from 'node:assert/strict';
import { test } from 'node:test';
import { pieceStarts } from '../../../src/pipeline/pieces.ts';
import { segmentSentences } from '../../../src/pipeline/segment.ts';

test('pieces start at sentence starts, each at least the piece size, so no sentence is cut', () => {
  const text = '患者主因头痛三天入院。\n既往体健，否认高血压！“咳嗽？”\r\n'.repeat(300) + '末尾没有句号';
  const starts = pieceStarts(text, 500);
  assert.equal(starts[0], 0);
  assert.ok(starts.length > 10);
  const sentenceStarts = new Set(segmentSentences('', text).map((s) => s.start));
  for (const s of starts.slice(1)) assert.ok(sentenceStarts.has(s), `${s} is a sentence start`);
  for (let i = 1; i < starts.length; i++) assert.ok(starts[i] - starts[i - 1] >= 500);
  // The sentences of the pieces, moved back, are the document's sentences.
  const pieced = starts.flatMap((from, i) => segmentSentences('', text.slice(from, starts[i + 1] ?? text.length)).map((s) => [s.start + from, s.end + from]));
  assert.deepEqual(pieced, segmentSentences('', text).map((s) => [s.start, s.end]));
});

test('a document shorter than a piece is one piece; a sentence over twice the piece size is cut every piece size', () => {
  assert.deepEqual(pieceStarts('头痛。发热。', 500), [0]);
  assert.deepEqual(pieceStarts('咳'.repeat(900), 500), [0]);
  assert.deepEqual(pieceStarts('咳'.repeat(2600), 500), [0, 500, 1000, 1500, 2000]);
  // Never inside a surrogate pair.
  const astral = '😷'.repeat(1300);
  for (const at of pieceStarts(astral, 501)) assert.equal(at % 2, 0);
  // A long unpunctuated stretch between ordinary sentences.
  const mixed = `${'头痛。'.repeat(10)}${'咳'.repeat(3000)}。${'发热。'.repeat(10)}`;
  const starts = pieceStarts(mixed, 1000);
  assert.deepEqual(starts, [0, 1000, 2000, 3031], 'cut inside the long stretch, then at the next sentence start');
});
