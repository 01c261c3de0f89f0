/**
 * Span correctness through the whole stage: sentences of the medical test split go through Kafka, the
 * Neo4j graph and the trained model, and the published entities are compared with the gold annotations
 * and with the same model run offline (the stream must not change what the model finds).
 *
 * Needs the fine-tuned model in models/medical (or RMBERT_TEST_MEDICAL_MODEL); without it the test is
 * skipped and says so. With a random-weight model the spans would be noise, so none is substituted.
 * RMBERT_TEST_MIN_F1 (default 0.75) sets the strict F1 the stream output must reach against gold.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { createModelLoader, modelDirectoryCatalog, openKnowledge } from '../../../src/cli/stage-wiring.ts';
import type { Document } from '../../../src/domain/index.ts';
import { KnowledgeGate } from '../../../src/pipeline/knowledge-gate.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { NO_STAGE_METRICS } from '../../../src/pipeline/ports.ts';
import { BatchProcessor } from '../../../src/pipeline/processor.ts';
import { startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { REPO_ROOT, sharedData } from '../../helpers/paths.ts';
import { Collector, TestProducer, createTopics, decodeAnnotations, loadTestGraph, stageConfig, tempDir, testKafka, testNames } from './harness.ts';

const MODEL_DIR = process.env.RMBERT_TEST_MEDICAL_MODEL ?? path.join(REPO_ROOT, 'models/medical');
const SENTENCES = 80;
const MIN_F1 = Number(process.env.RMBERT_TEST_MIN_F1 ?? 0.75);

interface GoldSentence {
  doc: Document;
  gold: Set<string>;
}

/** The first sentences of K-BERT's medical test split that have entities, with their gold spans (start:end:type). */
async function goldSentences(count: number): Promise<GoldSentence[]> {
  const lines = (await readFile(sharedData('kbert-medical-ner/test.tsv'), 'utf8')).split('\n').slice(1);
  const out: GoldSentence[] = [];
  for (const line of lines) {
    if (out.length >= count) break;
    const [chars, labels] = line.split('\t');
    if (!chars || !labels) continue;
    const tokens = chars.split(' ');
    const tags = labels.split(' ');
    const gold = new Set<string>();
    let offset = 0;
    let open: { start: number; type: string } | null = null;
    const close = (end: number) => {
      if (open) gold.add(`${open.start}:${end}:${open.type}`);
      open = null;
    };
    tokens.forEach((tok, i) => {
      const tag = tags[i];
      if (tag.startsWith('B-')) {
        close(offset);
        open = { start: offset, type: tag.slice(2) };
      } else if (!(tag.startsWith('I-') && open && (open as { type: string }).type === tag.slice(2))) close(offset);
      offset += tok.length;
    });
    close(offset);
    if (gold.size === 0) continue;
    const text = tokens.join('');
    out.push({ doc: { id: `test-${out.length}`, sourceSystem: 'ccks2017-test', patientRef: `pt-${out.length}`, text, language: 'zh', createdAt: Date.now(), section: null }, gold });
  }
  return out;
}

test('known medical sentences come out with the gold spans (trained model)', { skip: existsSync(MODEL_DIR) ? false : `no trained model at ${MODEL_DIR} yet; this test runs once it exists` }, async () => {
  const sentences = await goldSentences(SENTENCES);
  const names = testNames('stage-spans');
  const tmp = await tempDir('rmbert-spans');
  const graph = await loadTestGraph(names, sentences.map((s) => s.doc.text), tmp.dir);
  const kafka = testKafka();
  await createTopics(kafka, names);
  const config = stageConfig(names, MODEL_DIR, { 'model.engine': 'auto', 'batch.maxRecords': 32 });
  const knowledge = await openKnowledge(config, SILENT_LOGGER);
  const loader = createModelLoader({ engine: 'auto', logger: SILENT_LOGGER });
  const producer = await TestProducer.connect(kafka);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, { logger: SILENT_LOGGER, knowledge, modelLoader: loader, modelCatalog: modelDirectoryCatalog(MODEL_DIR) });
    await producer.documents(names.input, sentences.map((s) => s.doc));
    await outputs.waitFor(sentences.length, 120_000);
    assert.equal(outputs.items.length, sentences.length);

    let tp = 0;
    let predicted = 0;
    let gold = 0;
    const byId = new Map(outputs.items.map((o) => [o.record.documentId, o.record]));
    for (const s of sentences) {
      const out = byId.get(s.doc.id)!;
      const spans = new Set(out.entities.map((e) => `${e.start}:${e.end}:${e.type}`));
      for (const e of out.entities) assert.equal(s.doc.text.slice(e.start, e.end), e.text);
      predicted += spans.size;
      gold += s.gold.size;
      for (const g of s.gold) if (spans.has(g)) tp++;
    }
    const precision = tp / Math.max(1, predicted);
    const recall = tp / Math.max(1, gold);
    const f1 = (2 * precision * recall) / Math.max(1e-9, precision + recall);
    console.log(`stage spans vs gold on ${sentences.length} test sentences: P ${precision.toFixed(3)} R ${recall.toFixed(3)} F1 ${f1.toFixed(3)} (strict: span and type)`);
    assert.ok(f1 >= MIN_F1, `strict F1 ${f1.toFixed(3)} below ${MIN_F1}`);

    // The stream gives exactly what the same model gives offline on the same graph.
    const entry = (await modelDirectoryCatalog(MODEL_DIR).latest())!;
    const model = await loader.load({ location: entry.location, reason: 'startup' });
    const gate = new KnowledgeGate(knowledge, { retryInitialMs: 100, retryMaxMs: 1000, logger: SILENT_LOGGER, metrics: NO_STAGE_METRICS });
    const offline = await new BatchProcessor({ knowledge: gate, limits: { maxTextChars: 100_000 }, metrics: NO_STAGE_METRICS, logger: SILENT_LOGGER }).process(
      sentences.map((s) => s.doc),
      model,
    );
    offline.outcomes.forEach((o, i) => {
      assert.ok(o.ok);
      const streamed = byId.get(sentences[i].doc.id)!;
      assert.deepEqual(
        streamed.entities.map((e) => [e.start, e.end, e.type]),
        o.annotation.entities.map((e) => [e.start, e.end, e.type]),
        sentences[i].doc.id,
      );
    });
    await gate.close();
    await model.dispose();
  } finally {
    await stage?.stop(10_000);
    await outputs.close();
    await producer.close();
    await knowledge.close();
    await graph.drop();
    await tmp.remove();
  }
});
