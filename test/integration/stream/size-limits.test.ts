/**
 * No record stops the stream by its size (issue 15), against the real Kafka and Neo4j: the stage reads
 * the topics' max.message.bytes at start and fits every produce to it (src/stream/fit.ts); when it
 * was told wrong limits the broker refuses the records and the stage bisects the micro-batch and
 * dead-letters the documents at fault. Each test counts every input id in the outputs (read_committed)
 * and the dead-letter topic: each exactly once.
 *
 * Uses the trained model (models/medical): its entities on the dense texts are what makes the output
 * large (a random-weight model's density is arbitrary).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import { createModelLoader, modelDirectoryCatalog, openKnowledge } from '../../../src/cli/stage-wiring.ts';
import type { Document } from '../../../src/domain/index.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { codecs, type DeadLetterRecord, type EntityAnnotationsRecord } from '../../../src/stream/codecs.ts';
import { fixedLimits, type ProduceLimits } from '../../../src/stream/limits.ts';
import { toEmrDocumentRecord } from '../../../src/stream/records.ts';
import { startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';
import {
  Collector,
  TestProducer,
  decodeAnnotations,
  decodeDeadLetter,
  loadTestGraph,
  sampleDocuments,
  stageConfig,
  tempDir,
  testKafka,
  testNames,
  type Collected,
  type TestNames,
} from './harness.ts';

const MODEL_DIR = process.env.RMBERT_TEST_MEDICAL_MODEL ?? path.join(REPO_ROOT, 'models/medical');
const skip = existsSync(MODEL_DIR) ? false : `no trained model at ${MODEL_DIR}`;
/** Kafka's default max.message.bytes (the local broker's too). */
const ONE_MIB_LIMIT = 1_048_588;

const kafka = testKafka();
let samples: Document[];
let producer: TestProducer;

before(async () => {
  samples = await sampleDocuments();
  producer = await TestProducer.connect(kafka);
});
after(async () => {
  await producer.close();
});

function normalDocs(prefix: string, count: number): Document[] {
  return Array.from({ length: count }, (_, i) => ({ ...samples[i % samples.length], id: `${prefix}-${i}`, patientRef: `pt-${prefix}-${i}` }));
}

/** One partition per topic, so that what is produced in one send arrives as one fetch and micro-batch; the output topic may get its own max.message.bytes. */
async function createTopics(k: Kafka, names: TestNames, outputMaxMessageBytes?: number): Promise<void> {
  const admin = k.admin();
  await admin.connect();
  try {
    await admin.createTopics({
      waitForLeaders: true,
      topics: [names.input, names.output, names.deadLetter, names.feedback, names.modelUpdates].map((topic) => ({
        topic,
        numPartitions: 1,
        replicationFactor: 1,
        configEntries: topic === names.output && outputMaxMessageBytes ? [{ name: 'max.message.bytes', value: String(outputMaxMessageBytes) }] : [],
      })),
    });
  } finally {
    await admin.disconnect();
  }
}

interface Run {
  outputs: Collector<EntityAnnotationsRecord>;
  dead: Collector<DeadLetterRecord>;
  stage: StageHandle;
  names: TestNames;
}

/** Starts the stage with the trained model on fresh topics (and a graph holding the texts' concepts), runs `body`, stops everything. */
async function withStage(
  prefix: string,
  texts: string[],
  options: { outputMaxMessageBytes?: number; produceLimits?: ProduceLimits; overrides?: Record<string, number> },
  body: (run: Run) => Promise<void>,
): Promise<void> {
  const names = testNames(prefix);
  const tmp = await tempDir(`rmbert-${prefix}`);
  const graph = await loadTestGraph(names, texts, tmp.dir);
  await createTopics(kafka, names, options.outputMaxMessageBytes);
  const config = stageConfig(names, MODEL_DIR, {
    'model.engine': 'onnx',
    'batch.maxRecords': 32,
    'batch.maxBytes': 4 * 1024 * 1024,
    // These cases put large documents in one micro-batch on purpose: no cost cap, no heavy lane.
    'batch.maxCost': 100_000_000,
    'heavy.minCost': 0,
    ...options.overrides,
  });
  const knowledge = await openKnowledge(config, SILENT_LOGGER);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  const dead = await Collector.start(kafka, names.deadLetter, decodeDeadLetter);
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, {
      logger: SILENT_LOGGER,
      knowledge,
      modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }),
      modelCatalog: modelDirectoryCatalog(MODEL_DIR),
      produceLimits: options.produceLimits,
    });
    await body({ outputs, dead, stage, names });
  } finally {
    await stage?.stop(10_000);
    await outputs.close();
    await dead.close();
    await knowledge.close();
    await graph.drop();
    await tmp.remove();
  }
}

/**
 * How often each input id came out: an annotated document counts once when all its parts 0..parts-1
 * arrived exactly once; a dead letter counts once (keyed by the original key). A part seen twice, or a
 * document with parts missing, shows up as a count other than 1.
 */
function deliveries(outputs: Collected<EntityAnnotationsRecord>[], dead: Collected<DeadLetterRecord>[]): Map<string, number> {
  const counts = new Map<string, number>();
  const add = (id: string, n: number) => counts.set(id, (counts.get(id) ?? 0) + n);
  const parts = new Map<string, number[]>();
  for (const o of outputs) {
    const seen = parts.get(o.record.documentId) ?? [];
    seen.push(o.record.part);
    parts.set(o.record.documentId, seen);
  }
  for (const [id, seen] of parts) {
    const expected = outputs.find((o) => o.record.documentId === id)!.record.parts;
    const complete = seen.length % expected === 0 && Array.from({ length: expected }, (_, p) => seen.filter((x) => x === p).length).every((n) => n === seen.length / expected);
    add(id, complete ? seen.length / expected : 0.5);
  }
  for (const d of dead) add(d.record.originalKey?.toString() ?? '(no key)', 1);
  return counts;
}

async function waitUntil(what: string, done: () => boolean, timeoutMs: number): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!done()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until every id has come out, lets duplicates show up, then asserts each id came out exactly once and nothing else did. */
async function assertExactlyOnce(run: Run, ids: string[], timeoutMs = 180_000): Promise<Map<string, number>> {
  await waitUntil(`${ids.length} ids`, () => ids.every((id) => (deliveries(run.outputs.items, run.dead.items).get(id) ?? 0) >= 1), timeoutMs);
  await new Promise((r) => setTimeout(r, 1500));
  const counts = deliveries(run.outputs.items, run.dead.items);
  const lost = ids.filter((id) => !counts.has(id));
  const duplicated = [...counts].filter(([, n]) => n !== 1).map(([id]) => id);
  const unknown = [...counts.keys()].filter((id) => !ids.includes(id));
  assert.deepEqual({ lost, duplicated, unknown }, { lost: [], duplicated: [], unknown: [] });
  return counts;
}

/** An EmrDocument record of exactly `bytes` bytes (text of ASCII letters). */
function recordOfSize(doc: Document, bytes: number): Buffer {
  let n = bytes;
  for (let i = 0; i < 4; i++) {
    const value = codecs().emrDocument.encode(toEmrDocumentRecord({ ...doc, text: 'a'.repeat(n) }));
    if (value.length === bytes) return value;
    n += bytes - value.length;
  }
  throw new Error('could not hit the size');
}

describe('stage: every produce fits the size limits; no record stops the stream', { skip }, () => {
  test('a record just under 1 MiB whose text is too long is dead-lettered with a bounded prefix; the stream goes on; 0 lost, 0 duplicated', async () => {
    await withStage('size-big-dlq', samples.map((d) => d.text), {}, async (run) => {
      const before = normalDocs('before', 10);
      const after = normalDocs('after', 30);
      const big: Document = { ...samples[0], id: 'big-1' };
      const bigValue = recordOfSize(big, 1_048_000);
      await producer.documents(run.names.input, before);
      await producer.raw(run.names.input, [{ key: big.id, value: bigValue }]);
      await producer.documents(run.names.input, after);

      await assertExactlyOnce(run, [...before, big, ...after].map((d) => d.id));
      const [letter] = run.dead.items;
      assert.equal(run.dead.items.length, 1);
      assert.equal(letter.record.errorClass, 'TextTooLongError');
      assert.equal(letter.record.originalTruncated, true);
      assert.equal(letter.record.originalLength, bigValue.length);
      assert.equal(letter.record.originalSha256, (await import('node:crypto')).createHash('sha256').update(bigValue).digest('hex'));
      assert.deepEqual(letter.record.original, bigValue.subarray(0, letter.record.original.length));
      assert.ok(letter.record.original.length > 0 && letter.record.original.length <= 64 * 1024);
      assert.equal(letter.record.sourceTopic, run.names.input);
      assert.equal(letter.record.sourceOffset, 10);
      assert.equal(run.stage.counters().transactionsAborted, 0, 'no transaction was refused');
    });
  });

  test('ten entity-dense documents (8,600 characters of 痛。) in one micro-batch: outputs over 1 MiB together are delivered; the stream goes on', async () => {
    await withStage('size-dense', samples.map((d) => d.text), {}, async (run) => {
      const dense = Array.from({ length: 10 }, (_, i): Document => ({ ...samples[0], id: `dense-${i}`, text: '痛。'.repeat(4300) }));
      const after = normalDocs('after', 30);
      await producer.documents(run.names.input, dense);
      await producer.documents(run.names.input, after);

      await assertExactlyOnce(run, [...dense, ...after].map((d) => d.id));
      assert.equal(run.dead.items.length, 0);
      const denseOut = run.outputs.items.filter((o) => o.record.documentId.startsWith('dense-'));
      const bytes = denseOut.reduce((n, o) => n + codecs().entityAnnotations.encode(o.record).length, 0);
      // What makes this test able to fail: the ten outputs do not fit one record batch under the broker's limit.
      assert.ok(bytes > ONE_MIB_LIMIT, `dense outputs total ${bytes} bytes`);
      for (const o of denseOut) assert.equal(o.record.entities.length, 4300);
      assert.equal(run.stage.counters().transactionsAborted, 0);
      console.log(`ten dense outputs: ${bytes} bytes in ${denseOut.length} records, ${run.stage.counters().microBatches} micro-batches`);
    });
  });

  test('an output topic with a small max.message.bytes (read at start): linked concepts dropped, entities paged in order, nothing lost', async () => {
    const text = '颈部疼痛。'.repeat(1740);
    await withStage('size-paged', [text, ...samples.map((d) => d.text)], { outputMaxMessageBytes: 32 * 1024 }, async (run) => {
      const dense = Array.from({ length: 3 }, (_, i): Document => ({ ...samples[0], id: `paged-${i}`, text }));
      const normal = normalDocs('normal', 10);
      await producer.documents(run.names.input, [...dense, ...normal]);

      await assertExactlyOnce(run, [...dense, ...normal].map((d) => d.id));
      for (const d of dense) {
        const pages = run.outputs.items.filter((o) => o.record.documentId === d.id).sort((a, b) => a.record.part - b.record.part);
        assert.ok(pages.length > 1, `${d.id} paged`);
        assert.ok(pages.every((p) => p.record.linkedDropped && p.record.entities.every((e) => e.linked.length === 0)));
        const entities = pages.flatMap((p) => p.record.entities);
        assert.equal(entities.length, 3480);
        for (let i = 1; i < entities.length; i++) assert.ok(entities[i].start > entities[i - 1].start, 'in order');
        for (const e of entities) assert.equal(text.slice(e.start, e.end), e.text);
        // Pages follow each other on the one partition, in part order.
        assert.deepEqual(
          pages.map((p) => Number(p.offset)),
          [...pages.map((p) => Number(p.offset))].sort((a, b) => a - b),
        );
      }
      // Small outputs keep their linked concepts.
      const small = run.outputs.items.filter((o) => o.record.documentId.startsWith('normal-'));
      assert.ok(small.every((o) => o.record.parts === 1 && !o.record.linkedDropped));
      assert.ok(small.some((o) => o.record.entities.some((e) => e.linked.length > 0)), 'some linked concepts in small outputs');
    });
  });

  test('limits the stage does not know (told 10 MiB, the topic allows 32 KiB): the refused micro-batch is bisected, the documents at fault dead-lettered, the rest committed', async () => {
    const text = '颈部疼痛。'.repeat(1740);
    await withStage(
      'size-bisect',
      [text, ...samples.map((d) => d.text)],
      { outputMaxMessageBytes: 32 * 1024, produceLimits: fixedLimits(10 * 1024 * 1024) },
      async (run) => {
        const normal = normalDocs('normal', 12);
        const dense = Array.from({ length: 2 }, (_, i): Document => ({ ...samples[0], id: `refused-${i}`, text }));
        // One micro-batch: normal documents around the two whose outputs the broker refuses.
        await producer.documents(run.names.input, [...normal.slice(0, 5), dense[0], ...normal.slice(5, 9), dense[1], ...normal.slice(9)]);
        const more = normalDocs('more', 10);
        await producer.documents(run.names.input, more);

        await assertExactlyOnce(run, [...normal, ...dense, ...more].map((d) => d.id));
        const byKey = new Map(run.dead.items.map((d) => [d.record.originalKey?.toString(), d.record]));
        assert.equal(run.dead.items.length, 2);
        for (const d of dense) {
          const letter = byKey.get(d.id)!;
          assert.equal(letter.errorClass, 'OutputTooLargeError');
          assert.match(letter.message, /MESSAGE_TOO_LARGE|RECORD_LIST_TOO_LARGE/);
          assert.equal(letter.stage, 'publish');
        }
        assert.ok(run.stage.counters().transactionsAborted >= 2, 'the broker refused transactions');
        assert.ok(run.outputs.items.every((o) => o.record.parts === 1));
      },
    );
  });
});
