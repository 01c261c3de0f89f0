/**
 * Issue 15 item 2: the heavy-document lane on the real Kafka. Documents of at least heavy.minCost
 * characters are forwarded to the heavy topic inside their micro-batch's transaction and annotated by
 * the stage's second consumer; every input id still comes out exactly once (read_committed), a heavy
 * document's entities sit on its own text, and a heavy document that fails is dead-lettered with the
 * coordinates it had in the input topic. (That normal documents do not wait for heavy ones is a matter
 * of speed: benchmarks/reliability.ts measures it; the engine's turn-taking is tested in
 * test/unit/pipeline/turns.test.ts.)
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createModelLoader, modelDirectoryCatalog } from '../../../src/cli/stage-wiring.ts';
import type { Document } from '../../../src/domain/index.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { codecs } from '../../../src/stream/codecs.ts';
import { startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { writeRandomArtifact } from './artifact.ts';
import { Collector, TestProducer, createTopics, decodeAnnotations, decodeDeadLetter, poisoningLoader, sampleDocuments, stageConfig, tempDir, testKafka, testNames } from './harness.ts';

test('heavy documents go through their own lane: every id exactly once, spans on the text, failures dead-lettered with their input coordinates', { timeout: 300_000 }, async () => {
  const names = testNames('stage-heavy');
  const tmp = await tempDir('rmbert-heavy');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 21 });
  const kafka = testKafka();
  await createTopics(kafka, names, 1);
  const config = stageConfig(names, modelDir, { 'heavy.minCost': 2000, 'knowledge.enabled': false, 'batch.maxRecords': 4 });
  assert.equal(config.topics.heavy, `${names.input}.heavy`);
  const samples = await sampleDocuments();
  const normal = (i: number): Document => ({ ...samples[i % samples.length], id: `normal-${i}` });
  const heavy = (id: string, extra = ''): Document => {
    let text = '';
    for (let i = 0; text.length < 6000; i++) text += samples[i % samples.length].text;
    return { ...samples[0], id, text: text + extra };
  };
  const producer = await TestProducer.connect(kafka);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  const dead = await Collector.start(kafka, names.deadLetter, decodeDeadLetter);
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, {
      logger: SILENT_LOGGER,
      knowledge: null,
      modelLoader: poisoningLoader(createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }), '☣'),
      modelCatalog: modelDirectoryCatalog(modelDir),
    });
    // One partition, so offsets follow the order of these sends: normal 0-9 at 0-9, heavy-1 at 10,
    // normal 10-14 at 11-15, the poisoned heavy document at 16, heavy-2 at 17, normal 15-19 at 18-22.
    const heavyDocs = [heavy('heavy-1'), heavy('heavy-poison', '患者服用☣后出现咳嗽。'), heavy('heavy-2')];
    await producer.documents(names.input, Array.from({ length: 10 }, (_, i) => normal(i)));
    await producer.documents(names.input, [heavyDocs[0]]);
    await producer.documents(names.input, Array.from({ length: 5 }, (_, i) => normal(10 + i)));
    await producer.documents(names.input, heavyDocs.slice(1));
    await producer.documents(names.input, Array.from({ length: 5 }, (_, i) => normal(15 + i)));

    await outputs.waitFor(22, 180_000);
    await dead.waitFor(1, 60_000);
    const { recordsIn, forwardedHeavy, recordsOut, deadLettered } = stage.counters();
    assert.deepEqual({ recordsIn, forwardedHeavy, recordsOut, deadLettered }, { recordsIn: 23, forwardedHeavy: 3, recordsOut: 22, deadLettered: 1 });
    const { clean } = await stage.stop();
    stage = null;
    assert.ok(clean);
    // Everything is committed now; anything extra would be a duplicate.
    await new Promise((r) => setTimeout(r, 2000));

    const ids = outputs.items.map((o) => o.record.documentId).sort();
    const expected = [...Array.from({ length: 20 }, (_, i) => `normal-${i}`), 'heavy-1', 'heavy-2'].sort();
    assert.deepEqual(ids, expected, 'every document exactly once');
    for (const id of ['heavy-1', 'heavy-2']) {
      const out = outputs.items.find((o) => o.record.documentId === id)!;
      const text = heavyDocs.find((d) => d.id === id)!.text;
      for (const e of out.record.entities) assert.equal(text.slice(e.start, e.end), e.text, 'spans sit on the heavy document\'s text');
    }
    assert.equal(dead.items.length, 1);
    const letter = dead.items[0].record;
    assert.equal(letter.errorClass, 'InferenceError');
    assert.deepEqual([letter.sourceTopic, letter.sourcePartition, letter.sourceOffset], [names.input, 0, 16], 'the coordinates it had in the input topic');
    assert.equal(codecs().emrDocument.decode(letter.original).id, 'heavy-poison');

    // The heavy topic holds the three heavy documents as they came, nothing else.
    const forwarded = await Collector.start(kafka, config.topics.heavy, (b) => codecs().emrDocument.decode(b));
    try {
      await forwarded.waitFor(3, 30_000);
      await new Promise((r) => setTimeout(r, 1000));
      assert.deepEqual(forwarded.items.map((f) => f.record.id).sort(), heavyDocs.map((d) => d.id).sort());
    } finally {
      await forwarded.close();
    }
  } finally {
    await stage?.stop().catch(() => undefined);
    await producer.close();
    await outputs.close();
    await dead.close();
    await tmp.remove();
  }
});

test('heavy.minCost 0: no lane, no heavy consumer, every document in its micro-batch', { timeout: 300_000 }, async () => {
  const names = testNames('stage-noheavy');
  const tmp = await tempDir('rmbert-noheavy');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 22 });
  const kafka = testKafka();
  await createTopics(kafka, names, 1);
  const config = stageConfig(names, modelDir, { 'heavy.minCost': 0, 'knowledge.enabled': false, createTopics: false });
  const samples = await sampleDocuments();
  const text = samples.map((d) => d.text).join('').repeat(10);
  const producer = await TestProducer.connect(kafka);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, { logger: SILENT_LOGGER, knowledge: null, modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }), modelCatalog: modelDirectoryCatalog(modelDir) });
    await producer.documents(names.input, [{ ...samples[0], id: 'long', text }, { ...samples[1], id: 'short' }]);
    await outputs.waitFor(2, 120_000);
    assert.deepEqual(outputs.items.map((o) => o.record.documentId).sort(), ['long', 'short']);
    assert.equal(stage.counters().forwardedHeavy, 0);
    const until = Date.now() + 60_000;
    while (!stage.readiness().ready && Date.now() < until) await new Promise((r) => setTimeout(r, 200));
    assert.deepEqual(stage.readiness(), { ready: true, checks: { ...stage.readiness().checks } }, 'ready with one lane (its heavy topic was never created)');
    assert.equal(stage.readiness().checks.consumerJoined, true);
  } finally {
    await stage?.stop().catch(() => undefined);
    await producer.close();
    await outputs.close();
    await tmp.remove();
  }
});
