import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ModelError } from '../../../src/errors/index.ts';
import { KnowledgeGate } from '../../../src/pipeline/knowledge-gate.ts';
import { NO_STAGE_METRICS, type StageMetrics } from '../../../src/pipeline/ports.ts';
import { BatchProcessor, resolveOverlaps } from '../../../src/pipeline/processor.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { FakeKnowledge, FakeModel, doc } from './fakes.ts';

function setup(opts: { knowledge?: FakeKnowledge | null; metrics?: StageMetrics; maxTextChars?: number } = {}) {
  const knowledge = opts.knowledge === undefined ? new FakeKnowledge() : opts.knowledge;
  const metrics = opts.metrics ?? NO_STAGE_METRICS;
  const gate = knowledge ? new KnowledgeGate(knowledge, { retryInitialMs: 5, retryMaxMs: 20, logger: SILENT_LOGGER, metrics }) : null;
  const processor = new BatchProcessor({ knowledge: gate, limits: { maxTextChars: opts.maxTextChars ?? 1000 }, metrics, logger: SILENT_LOGGER });
  return { knowledge, gate, processor };
}

test('entities land on the original text with their linked triples, one engine call and one lookup per batch', async () => {
  const { knowledge, processor, gate } = setup();
  const model = new FakeModel();
  const docs = [doc('d1', '患者感冒三天。伴发热，咳嗽。'), doc('d2', '头部无外伤。\n无咳嗽。')];
  const result = await processor.process(docs, model);
  assert.equal(model.classifyCalls.length, 1, 'one engine call for the whole micro-batch');
  assert.equal(model.classifyCalls[0], 4, 'every sentence of every document');
  assert.equal(knowledge!.lookups, 1, 'one graph lookup for the whole micro-batch');
  assert.equal(result.outcomes.length, 2);
  const [a, b] = result.outcomes;
  assert.ok(a.ok && b.ok);
  assert.deepEqual(
    a.annotation.entities.map((e) => [e.start, e.end, e.text, e.type]),
    [
      [2, 4, '感冒', 'Disease'],
      [8, 10, '发热', 'Symptom'],
      [11, 13, '咳嗽', 'Symptom'],
    ],
  );
  for (const e of a.annotation.entities) assert.equal(docs[0].text.slice(e.start, e.end), e.text);
  assert.deepEqual(a.annotation.entities[0].linked, [{ relation: '类别', object: '疾病' }]);
  assert.deepEqual(b.annotation.entities.map((e) => [e.start, e.end, e.text]), [[8, 10, '咳嗽']]);
  assert.equal(a.annotation.modelVersion, 'fake-model+aaaaaaaaaaaa');
  assert.equal(a.annotation.kgVersion, 'kg-v1');
  assert.equal(a.annotation.engine, 'fake-engine');
  assert.equal(a.annotation.kgDegraded, false);
  for (const stage of ['segment', 'match', 'kg', 'inject', 'infer', 'assemble']) assert.ok(stage in a.annotation.timingsMs, stage);
  await gate!.close();
});

test('a document that makes the model throw is isolated; its neighbours are annotated', async () => {
  const { processor, gate } = setup();
  const model = new FakeModel({ poison: '☠' });
  const docs = [doc('ok1', '患者感冒。'), doc('bad', '毒☠药。'), doc('ok2', '发热三天。')];
  const result = await processor.process(docs, model);
  assert.deepEqual(model.classifyCalls, [3, 1, 1, 1], 'batch call, then one per document');
  assert.ok(result.outcomes[0].ok && result.outcomes[2].ok);
  const bad = result.outcomes[1];
  assert.ok(!bad.ok);
  assert.equal(bad.error.name, 'InferenceError');
  assert.equal(bad.stage, 'infer');
  assert.ok(!bad.error.message.includes('毒'), 'the message does not quote the text');
  await gate!.close();
});

test('a model that fails on every document is an error of the model (retried), not of the input', async () => {
  const { processor, gate } = setup();
  await assert.rejects(processor.process([doc('a', '感冒。'), doc('b', '发热。')], new FakeModel({ broken: true })), (e: unknown) => e instanceof ModelError && e.retriable);
  await gate!.close();
});

test('invalid documents fail validation with their own class and do not reach the model', async () => {
  const { processor, gate } = setup({ maxTextChars: 10 });
  const model = new FakeModel();
  const result = await processor.process([doc('e', ' '), doc('long', '咳'.repeat(11)), doc('u', '咳\ud800'), doc('fine', '感冒。')], model);
  assert.deepEqual(
    result.outcomes.map((o) => (o.ok ? 'ok' : o.error.name)),
    ['EmptyTextError', 'TextTooLongError', 'InvalidTextError', 'ok'],
  );
  assert.deepEqual(model.classifyCalls, [1]);
  await gate!.close();
});

test('long sentences are windowed, not cut: entities after the first window are found once', async () => {
  const { processor, gate } = setup();
  const model = new FakeModel({ window: 16 });
  const text = `${'左'.repeat(30)}感冒${'右'.repeat(30)}发热${'上'.repeat(7)}`;
  const result = await processor.process([doc('w', text)], model);
  const out = result.outcomes[0];
  assert.ok(out.ok);
  assert.equal(out.annotation.windowed, true);
  assert.deepEqual(out.annotation.entities.map((e) => [e.start, e.text]), [
    [30, '感冒'],
    [62, '发热'],
  ]);
  await gate!.close();
});

test('graph down: cached names keep their knowledge, uncached ones mark the document kgDegraded; recovery is automatic', async () => {
  const knowledge = new FakeKnowledge();
  const { processor, gate } = setup({ knowledge });
  const model = new FakeModel();
  await processor.process([doc('warm', '感冒。')], model); // caches 感冒
  knowledge.up = false;
  const result = await processor.process([doc('cached', '感冒。'), doc('uncached', '发热。'), doc('none', '无特殊。')], model);
  const [cached, uncached, none] = result.outcomes;
  assert.ok(cached.ok && uncached.ok && none.ok);
  assert.equal(cached.annotation.kgDegraded, false);
  assert.deepEqual(cached.annotation.entities[0].linked, [{ relation: '类别', object: '疾病' }]);
  assert.equal(uncached.annotation.kgDegraded, true);
  assert.deepEqual(uncached.annotation.entities[0].linked, []);
  assert.equal(none.annotation.kgDegraded, false);
  assert.equal(gate!.available, false);
  const lookupsWhileDown = knowledge.lookups;
  await processor.process([doc('x', '咳嗽。')], model);
  assert.equal(knowledge.lookups, lookupsWhileDown, 'no lookups go to the store while the gate is closed');

  knowledge.up = true;
  for (let i = 0; i < 100 && !gate!.available; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(gate!.available, true, 'the gate reopened by itself');
  const after = await processor.process([doc('back', '发热。')], model);
  assert.ok(after.outcomes[0].ok && !after.outcomes[0].annotation.kgDegraded);
  assert.deepEqual(after.outcomes[0].annotation.entities[0].linked, [{ relation: '类别', object: '症状' }]);
  await gate!.close();
});

test('a source without names yet (graph unreachable since start) marks every document kgDegraded', async () => {
  const knowledge = new FakeKnowledge();
  knowledge.noNames = true;
  const { processor, gate } = setup({ knowledge });
  const result = await processor.process([doc('a', '感冒。')], new FakeModel());
  assert.ok(result.outcomes[0].ok && result.outcomes[0].annotation.kgDegraded);
  assert.equal(result.outcomes[0].annotation.entities.length, 1, 'the model still runs');
  await gate!.close();
});

test('a model trained without knowledge skips matching and lookup', async () => {
  const knowledge = new FakeKnowledge();
  const { processor, gate } = setup({ knowledge });
  const model = new FakeModel({ usesKnowledge: false });
  const result = await processor.process([doc('a', '感冒。')], model);
  assert.equal(knowledge.lookups, 0);
  assert.ok(result.outcomes[0].ok);
  assert.equal(result.outcomes[0].annotation.kgVersion, '');
  assert.deepEqual(model.injected[0].matches, []);
  await gate!.close();
});

test('overlapping candidates keep the best-scored span', () => {
  const e = (start: number, end: number, score: number) => ({ start, end, text: '', type: 'X', score, linked: [] });
  assert.deepEqual(resolveOverlaps([e(0, 4, 0.9), e(2, 6, 0.95), e(8, 9, 0.1), e(0, 4, 0.9)]).map((x) => [x.start, x.end]), [
    [2, 6],
    [8, 9],
  ]);
});
