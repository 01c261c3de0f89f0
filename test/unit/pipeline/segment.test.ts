import assert from 'node:assert/strict';
import { test } from 'node:test';
import { segmentSentences } from '../../../src/pipeline/segment.ts';

test('splits on Chinese and ASCII terminators and newlines, keeping document offsets', () => {
  const text = '患者咳嗽三天。发热！有无胸痛？无；\n 查体:体温38.5℃!次日好转? 继续观察;\r\n出院';
  const sentences = segmentSentences('d1', text);
  assert.deepEqual(
    sentences.map((s) => s.text),
    ['患者咳嗽三天。', '发热！', '有无胸痛？', '无；', '查体:体温38.5℃!', '次日好转?', '继续观察;', '出院'],
  );
  for (const s of sentences) {
    assert.equal(text.slice(s.start, s.end), s.text);
    assert.equal(s.docId, 'd1');
  }
});

test('keeps runs of terminators and closing quotes with their sentence; skips blank pieces', () => {
  const text = '  他说“头痛。”？！\n\n\n   好转。。  ';
  const sentences = segmentSentences('d', text);
  assert.deepEqual(sentences.map((s) => s.text), ['他说“头痛。”？！', '好转。。']);
  assert.equal(sentences[0].start, 2);
  assert.equal(text.slice(sentences[1].start, sentences[1].end), '好转。。');
});

test('a text without terminators is one sentence (long ones are windowed later, not cut here)', () => {
  const text = '左'.repeat(5000);
  const sentences = segmentSentences('d', text);
  assert.equal(sentences.length, 1);
  assert.equal(sentences[0].end - sentences[0].start, 5000);
});

test('empty and whitespace-only texts give no sentences', () => {
  assert.deepEqual(segmentSentences('d', ''), []);
  assert.deepEqual(segmentSentences('d', ' \n\u3000\t'), []);
});
