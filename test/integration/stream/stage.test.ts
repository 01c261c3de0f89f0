/**
 * The stage against the real Kafka and Neo4j (scripts/infra.sh up): exactly-once output, dead letters,
 * knowledge outage and recovery, hot model swap, graceful and hard stops.
 *
 * The model is a small random-weight artifact (real format, real ONNX Runtime engine): these tests
 * check the plumbing and that every span sits on the original text; span correctness against gold
 * annotations is tested in spans.test.ts with the trained model.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createModelLoader, manifestSha256, modelDirectoryCatalog, openKnowledge } from '../../../src/cli/stage-wiring.ts';
import type { Document } from '../../../src/domain/index.ts';
import { PromStageMetrics } from '../../../src/metrics/index.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { codecs } from '../../../src/stream/codecs.ts';
import { startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { withCommitFaults } from '../harness/kafka-faults.ts';
import { writeRandomArtifact } from './artifact.ts';
import {
  Collector,
  TestProducer,
  capturingLogger,
  createTopics,
  decodeAnnotations,
  decodeDeadLetter,
  loadTestGraph,
  poisoningLoader,
  sampleDocuments,
  stageConfig,
  tempDir,
  testKafka,
  testNames,
} from './harness.ts';

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

function docsWithIds(prefix: string, count: number): Document[] {
  return Array.from({ length: count }, (_, i) => ({ ...samples[i % samples.length], id: `${prefix}-${i}`, patientRef: `pt-${prefix}-${i}` }));
}

/** Invalid UTF-8 inside a well-formed Avro string: encode a placeholder, then overwrite its bytes. */
function invalidUtf8Record(doc: Document): Buffer {
  const placeholder = 'QQQQ';
  const bytes = codecs().emrDocument.encode({ ...doc, text: `前${placeholder}后`, section: doc.section ?? null });
  const at = bytes.indexOf(Buffer.from(placeholder));
  bytes[at] = 0xff;
  bytes[at + 1] = 0xfe;
  bytes[at + 2] = 0xe5;
  return bytes;
}

describe('stage: exactly once, dead letters, no clinical text in logs', () => {
  test('N records in, N EntityAnnotations or DeadLetters out, each once; poison isolated', async () => {
    const names = testNames('stage-eo');
    const tmp = await tempDir('rmbert-stage');
    const modelDir = path.join(tmp.dir, 'models');
    const artifact = await writeRandomArtifact(path.join(modelDir, 'v1'), { name: 'rmbert-test', seed: 11 });
    const graph = await loadTestGraph(names, samples.map((d) => d.text), tmp.dir);
    const lines: string[] = [];
    const logger = capturingLogger(lines);
    const metrics = new PromStageMetrics({ processMetrics: false });
    const config = stageConfig(names, modelDir, { maxTextChars: 500 });
    const knowledge = await openKnowledge(config, logger, metrics);
    let stage: StageHandle | null = null;
    await createTopics(kafka, names);
    const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
    const dead = await Collector.start(kafka, names.deadLetter, decodeDeadLetter);
    try {
      stage = await startStage(config, {
        logger,
        metrics,
        knowledge,
        modelLoader: poisoningLoader(createModelLoader({ engine: 'onnx', logger }), '☣'),
        modelCatalog: modelDirectoryCatalog(modelDir),
      });
      const good = docsWithIds('good', 24);
      const poison: Document = { ...samples[0], id: 'poison-1', text: '患者服用☣后出现咳嗽。', patientRef: 'pt-poison-SECRET-77' };
      const feedback = codecs().feedback.encode({ documentId: 'x', text: '错误的主题', entities: [], annotator: 'a', modelVersionSeen: null, createdAt: 1 });
      const badRaw = [
        { key: 'garbage', value: Buffer.from('this is not avro at all') },
        { key: 'wrong-schema', value: feedback },
        { key: 'tombstone', value: null },
        { key: 'bad-utf8', value: invalidUtf8Record({ ...samples[1], id: 'bad-utf8' }) },
      ];
      const badDocs: Document[] = [
        { ...samples[2], id: 'empty', text: '   ' },
        { ...samples[3], id: 'too-long', text: '咳'.repeat(501) },
      ];
      await producer.documents(names.input, good.slice(0, 10));
      await producer.raw(names.input, badRaw);
      await producer.documents(names.input, [poison, ...badDocs]);
      await producer.documents(names.input, good.slice(10));

      await outputs.waitFor(good.length);
      await dead.waitFor(badRaw.length + badDocs.length + 1);
      // Anything extra would be a duplicate: give it time to show up.
      await new Promise((r) => setTimeout(r, 1500));

      const outIds = outputs.items.map((o) => o.record.documentId).sort();
      assert.deepEqual(outIds, good.map((d) => d.id).sort(), 'every good document exactly once');
      for (const o of outputs.items) {
        const source = good.find((d) => d.id === o.record.documentId)!;
        assert.equal(o.key, source.id, 'keyed by document id');
        assert.equal(o.record.modelVersion, `${artifact.version.name}+${artifact.version.hash}`);
        assert.equal(o.record.engine, 'onnxruntime-cpu');
        assert.match(o.record.kgVersion, /^[0-9a-f]{64}$/);
        assert.equal(o.record.kgDegraded, false);
        for (const e of o.record.entities) {
          assert.equal(source.text.slice(e.start, e.end), e.text, 'spans sit on the original text');
          assert.ok(e.score > 0 && e.score <= 1);
        }
        for (const stageName of ['decode', 'match', 'kg', 'inject', 'infer']) assert.ok(stageName in o.record.timingsMs, stageName);
      }

      const byKey = new Map(dead.items.map((d) => [d.key, d.record]));
      assert.equal(dead.items.length, 7, 'every bad record dead-lettered once');
      assert.equal(new Set(dead.items.map((d) => `${d.record.sourcePartition}:${d.record.sourceOffset}`)).size, 7);
      assert.equal(byKey.get('garbage')!.errorClass, 'SchemaError');
      assert.deepEqual(byKey.get('garbage')!.original, Buffer.from('this is not avro at all'), 'original bytes kept');
      assert.equal(byKey.get('wrong-schema')!.errorClass, 'SchemaError');
      assert.match(byKey.get('wrong-schema')!.message, /unknown schema/);
      assert.equal(byKey.get('tombstone')!.errorClass, 'SchemaError');
      assert.equal(byKey.get('bad-utf8')!.errorClass, 'InvalidTextError');
      assert.equal(byKey.get('empty')!.errorClass, 'EmptyTextError');
      assert.equal(byKey.get('too-long')!.errorClass, 'TextTooLongError');
      const poisonDead = byKey.get('poison-1')!;
      assert.equal(poisonDead.errorClass, 'InferenceError');
      assert.equal(poisonDead.stage, 'infer');
      assert.equal(poisonDead.sourceTopic, names.input);
      assert.equal(codecs().emrDocument.decode(poisonDead.original).id, 'poison-1', 'the poison record is kept whole');

      const counters = stage.counters();
      assert.equal(counters.recordsIn, 31);
      assert.equal(counters.recordsOut, 24);
      assert.equal(counters.deadLettered, 7);
      const text = await metrics.text();
      assert.match(text, /rmbert_records_in_total 31/);
      assert.match(text, /rmbert_records_out_total 24/);
      assert.match(text, /rmbert_records_dead_lettered_total\{error_class="SchemaError"\} 3/);
      assert.match(text, /rmbert_records_dead_lettered_total\{error_class="InferenceError"\} 1/);
      assert.match(text, /rmbert_model_info\{version="rmbert-test\+[0-9a-f]{12}",engine="onnxruntime-cpu"\} 1/);
      assert.match(text, /rmbert_end_to_end_seconds_count 31/);
      assert.ok(stage.readiness().ready, JSON.stringify(stage.readiness()));

      const result = await stage.stop();
      assert.equal(result.clean, true);
      stage = null;

      // No document text and no patient reference in any log line, at any level (debug included).
      const log = lines.join('\n');
      assert.ok(lines.length > 10, 'the stage logged');
      assert.ok(lines.some((l) => l.includes('"msg":"record dead-lettered"') && l.includes('poison-1')), 'the poison record was logged by id');
      for (const d of [...good, poison, ...badDocs.slice(0, 1)]) {
        assert.ok(!log.includes(d.patientRef), `patientRef ${d.patientRef} leaked into logs`);
        if (d.text.trim()) assert.ok(!log.includes(d.text), `text of ${d.id} leaked into logs`);
      }
      assert.ok(!log.includes('☣'), 'poison text leaked into logs');
      for (const l of lines) JSON.parse(l);
    } finally {
      await stage?.stop(5000);
      await outputs.close();
      await dead.close();
      await knowledge.close();
      await graph.drop();
      await tmp.remove();
    }
  });

  for (const mode of ['graceful', 'hard'] as const) {
    test(`a ${mode} stop mid-stream and a restart still give every record exactly once (read_committed)`, async () => {
      const names = testNames(`stage-${mode}`);
      const tmp = await tempDir('rmbert-stage');
      const modelDir = path.join(tmp.dir, 'models');
      await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 5 });
      await writeFile(path.join(tmp.dir, 'kg.spo'), '支气管肺炎\t类别\t疾病\n胸部CT\t类别\t检查\n');
      const config = stageConfig(names, modelDir, { 'batch.maxRecords': 3, embedded: true, 'knowledge.kgFile': path.join(tmp.dir, 'kg.spo') });
      await createTopics(kafka, names);
      const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
      const docs = docsWithIds(mode, 240);
      const start = async () =>
        startStage(config, {
          logger: process.env.RMBERT_TEST_LOG ? capturingLogger({ push: (l: string) => process.stderr.write(`${l}\n`) } as unknown as string[]) : SILENT_LOGGER,
          knowledge: await openKnowledge(config, SILENT_LOGGER),
          modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }),
          modelCatalog: modelDirectoryCatalog(modelDir),
        });
      let first: StageHandle | null = null;
      let second: StageHandle | null = null;
      try {
        first = await start();
        await producer.documents(names.input, docs);
        while (outputs.items.length < 6) await new Promise((r) => setTimeout(r, 20));
        const stopped = await first.stop(mode === 'graceful' ? 20_000 : 1);
        assert.equal(stopped.clean, mode === 'graceful');
        const afterFirst = first.counters();
        assert.ok(afterFirst.recordsOut < docs.length, 'stopped mid-stream');
        second = await start();
        await outputs.waitFor(docs.length);
        await new Promise((r) => setTimeout(r, 2000));
        const ids = outputs.items.map((o) => o.record.documentId);
        assert.equal(ids.length, docs.length, `no duplicates and no losses (${ids.length} outputs for ${docs.length} inputs)`);
        assert.deepEqual([...new Set(ids)].sort(), docs.map((d) => d.id).sort());
        if (mode === 'graceful') {
          // Everything the first stage published was committed with its offsets: the second one did only the rest.
          assert.equal(afterFirst.recordsOut + second.counters().recordsOut, docs.length);
        }
      } finally {
        await first?.stop(1000);
        await second?.stop(10_000);
        await outputs.close();
        await tmp.remove();
      }
    });
  }
});

describe('stage: hot model swap', () => {
  test('a ModelUpdate and a new artifact in the model directory are picked up without a restart; tampered ones are refused', async () => {
    const names = testNames('stage-swap');
    const tmp = await tempDir('rmbert-swap');
    const modelDir = path.join(tmp.dir, 'models');
    const v1 = await writeRandomArtifact(path.join(modelDir, 'v1'), { name: 'm', seed: 1 });
    const v2 = await writeRandomArtifact(path.join(tmp.dir, 'elsewhere/v2'), { name: 'm', seed: 2 });
    const v3 = await writeRandomArtifact(path.join(tmp.dir, 'elsewhere/v3'), { name: 'm', seed: 3 });
    const v3Sha = await manifestSha256(v3.dir);
    // Tamper with v3 after its manifest was written: one byte of the weights.
    const weightsFile = path.join(v3.dir, 'weights.safetensors');
    const bytes = await readFile(weightsFile);
    bytes[bytes.length - 1] ^= 0xff;
    await writeFile(weightsFile, bytes);
    const lines: string[] = [];
    const logger = capturingLogger(lines);
    const metrics = new PromStageMetrics({ processMetrics: false });
    await writeFile(path.join(tmp.dir, 'kg.spo'), '支气管肺炎\t类别\t疾病\n');
    const config = stageConfig(names, modelDir, { embedded: true, 'knowledge.kgFile': path.join(tmp.dir, 'kg.spo'), 'model.pollIntervalMs': 300 });
    await createTopics(kafka, names);
    const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
    let stage: StageHandle | null = null;
    const version = (a: { version: { name: string; hash: string } }) => `${a.version.name}+${a.version.hash}`;
    let n = 0;
    /** Produces documents until one comes out made by `expected`, returning every output seen meanwhile. */
    const until = async (expected: string, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      while (Date.now() < deadline) {
        const id = `swap-${n++}`;
        await producer.documents(names.input, [{ ...samples[n % samples.length], id }]);
        const seen = Date.now();
        while (!outputs.items.some((o) => o.record.documentId === id) && Date.now() - seen < 20_000) await new Promise((r) => setTimeout(r, 20));
        if (outputs.items.find((o) => o.record.documentId === id)?.record.modelVersion === expected) return;
        await new Promise((r) => setTimeout(r, 200));
      }
      assert.fail(`no output from ${expected} within ${timeoutMs} ms`);
    };
    try {
      stage = await startStage(config, {
        logger,
        metrics,
        knowledge: await openKnowledge(config, logger),
        modelLoader: createModelLoader({ engine: 'onnx', logger }),
        modelCatalog: modelDirectoryCatalog(modelDir),
      });
      while (!stage.readiness().ready) await new Promise((r) => setTimeout(r, 50));
      await until(version(v1));

      const publishUpdate = async (location: string, sha256: string, name: string) =>
        producer.raw(names.modelUpdates, [
          { key: name, value: codecs().modelUpdate.encode({ version: name, artifactLocation: location, sha256, metrics: { f1: 0.5 }, createdAt: Date.now() }) },
        ]);
      await publishUpdate(v2.dir, await manifestSha256(v2.dir), 'm-v2');
      await until(version(v2));

      // Refused: the tampered artifact, and a sound artifact announced with another hash.
      await publishUpdate(v3.dir, v3Sha, 'm-v3-tampered');
      await publishUpdate(v1.dir, 'f'.repeat(64), 'm-v1-wrong-hash');
      const refusedBy = Date.now() + 30_000;
      while (!/rmbert_model_swaps_total\{outcome="refused"\} 2/.test(await metrics.text()) && Date.now() < refusedBy) await new Promise((r) => setTimeout(r, 100));
      assert.match(await metrics.text(), /rmbert_model_swaps_total\{outcome="refused"\} 2/);
      await until(version(v2), 10_000);
      assert.ok(lines.some((l) => l.includes('model refused') && l.includes('m-v3-tampered')));

      // A new artifact appearing in the model directory.
      const v4 = await writeRandomArtifact(path.join(modelDir, 'v4'), { name: 'm', seed: 4 });
      await until(version(v4));

      // Each output says which model made it, and the versions never go back.
      const order = [version(v1), version(v2), version(v4)];
      const byOffset = [...outputs.items].sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
      for (const p of new Set(byOffset.map((o) => o.partition))) {
        const seq = byOffset.filter((o) => o.partition === p).map((o) => order.indexOf(o.record.modelVersion));
        assert.ok(seq.every((v) => v >= 0), 'only known versions');
        assert.deepEqual(seq, [...seq].sort((a, b) => a - b), 'versions switch between micro-batches and never go back');
      }
      assert.match(await metrics.text(), /rmbert_model_swaps_total\{outcome="installed"\} 2/);
    } finally {
      await stage?.stop(10_000);
      await outputs.close();
      await tmp.remove();
    }
  });
});

describe('stage: failed output transactions', () => {
  test('a commit that fails is aborted and retried; one whose reply is lost is not published twice', async () => {
    const names = testNames('stage-txfail');
    const tmp = await tempDir('rmbert-txfail');
    const modelDir = path.join(tmp.dir, 'models');
    await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 3 });
    await writeFile(path.join(tmp.dir, 'kg.spo'), '支气管肺炎\t类别\t疾病\n');
    const config = stageConfig(names, modelDir, { 'batch.maxRecords': 4, embedded: true, 'knowledge.kgFile': path.join(tmp.dir, 'kg.spo') });
    await createTopics(kafka, names);
    const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
    // The real client, with the transactional producers' commit failing on the 2nd call (before it
    // reaches the broker: the transaction is still open and gets aborted) and on the 4th (after the
    // broker committed: the client only sees an error, as when a reply is lost).
    const faults: string[] = [];
    const real = testKafka();
    const faulty = withCommitFaults(real, (n) => {
      const what = n === 2 ? 'before' : n === 4 ? 'after' : null;
      if (what) faults.push(what);
      return what;
    });
    const metrics = new PromStageMetrics({ processMetrics: false });
    let stage: StageHandle | null = null;
    try {
      stage = await startStage(config, {
        logger: SILENT_LOGGER,
        metrics,
        kafka: faulty,
        knowledge: await openKnowledge(config, SILENT_LOGGER),
        modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }),
        modelCatalog: modelDirectoryCatalog(modelDir),
      });
      const docs = docsWithIds('txfail', 24);
      await producer.documents(names.input, docs);
      await outputs.waitFor(docs.length);
      await new Promise((r) => setTimeout(r, 2000));
      assert.deepEqual(faults, ['before', 'after'], 'both faults were injected');
      const ids = outputs.items.map((o) => o.record.documentId);
      assert.equal(ids.length, docs.length, `exactly once: ${ids.length} outputs for ${docs.length} inputs`);
      assert.deepEqual([...new Set(ids)].sort(), docs.map((d) => d.id).sort());
      assert.equal(stage.counters().transactionsAborted, 2);
      assert.match(await metrics.text(), /rmbert_transactions_aborted_total 2/);
    } finally {
      await stage?.stop(10_000);
      await outputs.close();
      await tmp.remove();
    }
  });
});
