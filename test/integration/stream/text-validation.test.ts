/**
 * Issue 15, item 6, through the stage with the real Kafka and Neo4j: a validly encoded U+FFFD is text
 * and gets annotated; invalid UTF-8 bytes are dead-lettered, in the text as InvalidTextError and in the
 * id (which keys the output) as InvalidDocumentError, instead of silently becoming U+FFFD. Every input
 * comes out exactly once.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { createModelLoader, modelDirectoryCatalog, openKnowledge } from '../../../src/cli/stage-wiring.ts';
import type { Document } from '../../../src/domain/index.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { codecs } from '../../../src/stream/codecs.ts';
import { toEmrDocumentRecord } from '../../../src/stream/records.ts';
import { startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { writeRandomArtifact } from './artifact.ts';
import { Collector, TestProducer, createTopics, decodeAnnotations, decodeDeadLetter, loadTestGraph, sampleDocuments, stageConfig, tempDir, testKafka, testNames } from './harness.ts';

/** The document's record with `field`'s placeholder bytes overwritten by `bytes` (the Avro string stays well formed). */
function withBytes(doc: Document, field: 'id' | 'text', bytes: number[]): Buffer {
  const placeholder = 'Q'.repeat(bytes.length);
  const value = codecs().emrDocument.encode(toEmrDocumentRecord({ ...doc, [field]: field === 'id' ? `${doc.id}${placeholder}` : `前${placeholder}后` }));
  const at = value.indexOf(Buffer.from(placeholder));
  Buffer.from(bytes).copy(value, at);
  return value;
}

test('a valid U+FFFD is annotated; invalid UTF-8 in the text or the id is dead-lettered; each record once', async () => {
  const samples = await sampleDocuments();
  const names = testNames('stage-utf8');
  const tmp = await tempDir('rmbert-utf8');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { name: 'rmbert-test', seed: 5 });
  const graph = await loadTestGraph(names, samples.map((d) => d.text), tmp.dir);
  const kafka = testKafka();
  await createTopics(kafka, names);
  const config = stageConfig(names, modelDir);
  const knowledge = await openKnowledge(config, SILENT_LOGGER);
  const producer = await TestProducer.connect(kafka);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  const dead = await Collector.start(kafka, names.deadLetter, decodeDeadLetter);
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, {
      logger: SILENT_LOGGER,
      knowledge,
      modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }),
      modelCatalog: modelDirectoryCatalog(modelDir),
    });
    const good: Document[] = samples.slice(0, 6).map((d, i) => ({ ...d, id: `good-${i}` }));
    const replacement: Document = { ...samples[0], id: 'fffd-\ufffd', text: `${samples[0].text}\ufffd（原文如此）` };
    await producer.documents(names.input, [...good.slice(0, 3), replacement]);
    await producer.raw(names.input, [
      { key: 'bad-text', value: withBytes({ ...samples[1], id: 'bad-text' }, 'text', [0xe5, 0xa4, 0xff]) },
      { key: 'bad-id', value: withBytes({ ...samples[1], id: 'bad-id-' }, 'id', [0xc0, 0xaf]) },
    ]);
    await producer.documents(names.input, good.slice(3));

    await outputs.waitFor(good.length + 1);
    await dead.waitFor(2);
    await new Promise((r) => setTimeout(r, 1500));
    assert.deepEqual(outputs.items.map((o) => o.record.documentId).sort(), [...good.map((d) => d.id), replacement.id].sort());
    const fffd = outputs.items.find((o) => o.record.documentId === replacement.id)!;
    assert.equal(fffd.key, replacement.id, 'keyed by the id as sent');
    for (const e of fffd.record.entities) assert.equal(replacement.text.slice(e.start, e.end), e.text);

    const byKey = new Map(dead.items.map((d) => [d.key, d.record]));
    assert.equal(dead.items.length, 2);
    assert.equal(byKey.get('bad-text')!.errorClass, 'InvalidTextError');
    assert.match(byKey.get('bad-text')!.message, /field text is not valid UTF-8/);
    assert.equal(byKey.get('bad-id')!.errorClass, 'InvalidDocumentError');
    assert.match(byKey.get('bad-id')!.message, /field id is not valid UTF-8/);
    assert.equal(byKey.get('bad-id')!.stage, 'decode');
  } finally {
    await stage?.stop(10_000);
    await outputs.close();
    await dead.close();
    await producer.close();
    await knowledge.close();
    await graph.drop();
    await tmp.remove();
  }
});
