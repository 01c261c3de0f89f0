import { test } from 'node:test';
import assert from 'node:assert/strict';
import { delegatingModel } from '../../../src/pipeline/ports.ts';
import { FakeModel } from './fakes.ts';

test('delegatingModel replaces only what it is given and passes everything else to the model', async () => {
  const model = new FakeModel({ name: 'm', hash: 'bbbbbbbbbbbb', usesKnowledge: false });
  const seen: number[] = [];
  const wrapped = delegatingModel(model, {
    classify: async (sentences) => {
      seen.push(sentences.length);
      return model.classify(sentences);
    },
  });
  assert.deepEqual(wrapped.version, { name: 'm', hash: 'bbbbbbbbbbbb' });
  assert.equal(wrapped.engine, 'fake-engine');
  assert.equal(wrapped.usesKnowledge, false);
  const text = '患者发热';
  const tokens = wrapped.tokenize(text);
  assert.deepEqual(tokens, model.tokenize(text));
  const sentence = { docId: 'd1', text, start: 0, end: text.length };
  const injected = wrapped.inject(sentence, tokens, [], new Map());
  assert.equal(model.injected.length, 1, 'inject reached the model');
  const logits = await wrapped.classify(injected.windows);
  assert.deepEqual(seen, [injected.windows.length], 'the override ran');
  assert.deepEqual(model.classifyCalls.length, 1, 'and called through to the model');
  assert.deepEqual(wrapped.decode(injected.windows[0], logits[0]), model.decode(injected.windows[0], logits[0]));
  await wrapped.dispose();
  assert.equal(model.disposed, true);
});
