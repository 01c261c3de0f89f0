/**
 * Assertions end to end: `rmbert serve`'s composition root (startServe: configuration -> shipped plus
 * hospital lexicon -> stage) on the real Kafka and Neo4j with the trained model; the output records are
 * read back with read_committed and decoded with the v3 schema.
 *
 * Needs the fine-tuned model in models/medical (or RMBERT_TEST_MEDICAL_MODEL), as spans.test.ts does: a
 * random-weight model finds no reliable entity to assess.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startServe, type ServeSession } from '../../../src/cli/commands/serve.ts';
import type { Document } from '../../../src/domain/index.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import type { EntityAnnotationsRecord } from '../../../src/stream/codecs.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { Collector, TestProducer, createTopics, decodeAnnotations, loadTestGraph, stageConfig, tempDir, testKafka, testNames } from './harness.ts';

const MODEL_DIR = process.env.RMBERT_TEST_MEDICAL_MODEL ?? path.join(REPO_ROOT, 'models/medical');
const skip = existsSync(MODEL_DIR) ? false : `no trained model at ${MODEL_DIR} yet; this test runs once it exists`;

function document(id: string, text: string): Document {
  return { id, sourceSystem: 'assertion-test', patientRef: `pt-${id}`, text, language: 'zh', createdAt: Date.now(), section: null };
}

/** Runs the stage with `overrides`, sends `docs`, returns each document's committed output record. */
async function throughStage(prefix: string, docs: Document[], overrides: (dir: string) => Promise<Record<string, string | boolean>>): Promise<Map<string, EntityAnnotationsRecord>> {
  const names = testNames(prefix);
  const tmp = await tempDir(`rmbert-${prefix}`);
  const graph = await loadTestGraph(names, docs.map((d) => d.text), tmp.dir);
  const kafka = testKafka();
  await createTopics(kafka, names);
  const producer = await TestProducer.connect(kafka);
  // Collector reads with isolation read_committed: only what the stage's transactions committed.
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  let session: ServeSession | null = null;
  try {
    const config = stageConfig(names, MODEL_DIR, { 'model.engine': 'auto', ...(await overrides(tmp.dir)) });
    session = await startServe(config, SILENT_LOGGER);
    await producer.documents(names.input, docs);
    await outputs.waitFor(docs.length, 120_000);
    assert.equal(outputs.items.length, docs.length, 'one committed output per document');
    return new Map(outputs.items.map((o) => [o.record.documentId, o.record]));
  } finally {
    await session?.stop(10_000);
    await outputs.close();
    await producer.close();
    await graph.drop();
    await tmp.remove();
  }
}

function entity(r: EntityAnnotationsRecord | undefined, text: string) {
  const e = r?.entities.find((x) => x.text === text);
  assert.ok(e, `the model found ${text} in ${r?.documentId}: ${JSON.stringify(r?.entities.map((x) => x.text))}`);
  return e;
}

test('a negated entity comes out absent with its trigger; a hospital lexicon adds its own triggers', { skip, timeout: 300_000 }, async () => {
  const docs = [document('negated', '否认高血压、糖尿病病史。'), document('hospital', '罹患糖尿病。')];
  const out = await throughStage('stage-assertion', docs, async (dir) => {
    const lexicon = path.join(dir, 'hospital-triggers.tsv');
    await writeFile(lexicon, 'trigger\tproperty\tdirection\tkind\treach\ttypes\tnote\n罹患\thistory\tforward\ttrigger\tsentence\t\thospital phrasing\n');
    return { 'assertion.lexiconFile': lexicon };
  });
  for (const text of ['高血压', '糖尿病']) {
    const a = entity(out.get('negated'), text).assertion;
    assert.equal(a?.polarity, 'absent', text);
    assert.equal(a?.temporality, 'historical', text);
    assert.equal(a?.certainty, 'certain', text);
    assert.equal(a?.experiencer, 'patient', text);
    // Decoded records are avsc class instances: compared as plain objects.
    assert.deepEqual({ ...a?.triggers.find((t) => t.property === 'negation') }, { start: 0, end: 2, text: '否认', property: 'negation' });
  }
  const hospital = entity(out.get('hospital'), '糖尿病').assertion;
  assert.equal(hospital?.polarity, 'present');
  assert.equal(hospital?.temporality, 'historical', 'the hospital trigger 罹患 is not in the shipped lexicon');
  assert.deepEqual(hospital?.triggers.map((t) => ({ ...t })), [{ start: 0, end: 2, text: '罹患', property: 'history' }]);
});

test('with assertions off the stage publishes the entities with a null assertion', { skip, timeout: 300_000 }, async () => {
  const out = await throughStage('stage-assertion-off', [document('negated', '否认高血压、糖尿病病史。')], async () => ({ 'assertion.enabled': false }));
  assert.equal(entity(out.get('negated'), '高血压').assertion, null);
});
