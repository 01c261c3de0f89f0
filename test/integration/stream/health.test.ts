/**
 * Issue 15, item 4: health that tells the truth, with the real Kafka and Neo4j. /readyz and
 * rmbert_ready come from one function (Stage.readiness); a stage whose output transactions keep
 * aborting turns not ready and says why (in /readyz's body and rmbert_readiness_check), and ready
 * again once they commit; so does a stage whose work in progress has not committed for too long (a hung
 * model); rmbert_kg_available is 0 from the start when the graph could not be reached.
 */
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { createModelLoader, modelDirectoryCatalog, openKnowledge } from '../../../src/cli/stage-wiring.ts';
import { PromStageMetrics, startMetricsServer } from '../../../src/metrics/index.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { delegatingModel, type ModelLoader } from '../../../src/pipeline/ports.ts';
import { NOT_READY_AFTER_ABORTS, startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { withCommitFaults } from '../harness/kafka-faults.ts';
import { writeRandomArtifact } from './artifact.ts';
import { Collector, TestProducer, createTopics, decodeAnnotations, sampleDocuments, stageConfig, tempDir, testKafka, testNames } from './harness.ts';

async function waitUntil(what: string, done: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const readyMetric = (text: string) => /^rmbert_ready (\d)$/m.exec(text)?.[1];
const checkMetric = (text: string, check: string) => new RegExp(`^rmbert_readiness_check\\{check="${check}"\\} (\\d)$`, 'm').exec(text)?.[1];

test('transactions aborting in a row turn the stage not ready, with the reason; /readyz and rmbert_ready agree throughout, also while stopping', async () => {
  const names = testNames('stage-health');
  const tmp = await tempDir('rmbert-health');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 4 });
  await writeFile(path.join(tmp.dir, 'kg.spo'), '支气管肺炎\t类别\t疾病\n');
  const config = stageConfig(names, modelDir, { 'batch.maxRecords': 4, embedded: true, 'knowledge.kgFile': path.join(tmp.dir, 'kg.spo'), 'kafka.maxRetryMs': 300 });
  await createTopics(testKafka(), names);
  const outputs = await Collector.start(testKafka(), names.output, decodeAnnotations);
  // The real client, with every transactional commit failing (before it reaches the broker) while `failing` is set.
  let failing = true;
  const real = testKafka();
  const faulty = withCommitFaults(real, () => (failing ? 'before' : null));
  const metrics = new PromStageMetrics({ processMetrics: false });
  let stage: StageHandle | null = null;
  const server = await startMetricsServer({ registry: metrics.registry, port: 0, host: '127.0.0.1', readiness: () => stage?.readiness() ?? { ready: false, checks: { started: false } } });
  const producer = await TestProducer.connect(testKafka());
  /** /readyz and /metrics read at once; both answers, for comparing. */
  const probe = async () => {
    const [readyz, text] = await Promise.all([fetch(`${server.url}/readyz`), fetch(`${server.url}/metrics`).then((r) => r.text())]);
    return { status: readyz.status, body: (await readyz.json()) as { checks: Record<string, boolean>; reasons?: string[] }, ready: readyMetric(text), text };
  };
  try {
    stage = await startStage(config, {
      logger: SILENT_LOGGER,
      metrics,
      kafka: faulty,
      knowledge: await openKnowledge(config, SILENT_LOGGER),
      modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }),
      modelCatalog: modelDirectoryCatalog(modelDir),
    });
    await waitUntil('ready', () => stage!.readiness().ready);
    let p = await probe();
    assert.equal(p.status, 200);
    assert.equal(p.ready, '1', 'rmbert_ready agrees with /readyz once ready');

    const docs = (await sampleDocuments()).slice(0, 8).map((d, i) => ({ ...d, id: `health-${i}` }));
    await producer.documents(names.input, docs);
    await waitUntil(`${NOT_READY_AFTER_ABORTS} aborts in a row`, () => stage!.counters().transactionsAborted >= NOT_READY_AFTER_ABORTS);
    p = await probe();
    assert.equal(p.status, 503);
    assert.equal(p.ready, '0', 'rmbert_ready agrees with /readyz while not making progress');
    assert.equal(p.body.checks.transactionsCommitting, false);
    assert.match(p.body.reasons?.join(' ') ?? '', /output transactions aborted \d+ times in a row/);
    assert.equal(checkMetric(p.text, 'transactionsCommitting'), '0');
    assert.equal(checkMetric(p.text, 'consumerJoined'), '1');

    failing = false;
    await outputs.waitFor(docs.length);
    await waitUntil('ready again', () => stage!.readiness().ready);
    p = await probe();
    assert.equal(p.status, 200);
    assert.equal(p.ready, '1');
    assert.equal(checkMetric(p.text, 'transactionsCommitting'), '1');
    await new Promise((r) => setTimeout(r, 1000));
    assert.deepEqual(outputs.items.map((o) => o.record.documentId).sort(), docs.map((d) => d.id).sort(), 'each document once');

    // While stopping: both say not ready from the moment stop() is called.
    const stopping = stage.stop(10_000);
    p = await probe();
    assert.equal(p.status, 503);
    assert.equal(p.ready, '0', 'rmbert_ready agrees with /readyz while stopping');
    assert.equal(p.body.checks.notStopping, false);
    assert.equal((await stopping).clean, true);
    stage = null;
  } finally {
    await stage?.stop(5000);
    await server.close();
    await producer.close();
    await outputs.close();
    await tmp.remove();
  }
});

test('rmbert_kg_available is 0 from the start when the graph could not be reached, before any lookup', async () => {
  const names = testNames('stage-kgdown');
  const tmp = await tempDir('rmbert-kgdown');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 6 });
  // A loopback port nothing listens on: Neo4j unreachable.
  const closedPort = await new Promise<number>((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
  const config = stageConfig(names, modelDir, { 'neo4j.uri': `bolt://127.0.0.1:${closedPort}` });
  await createTopics(testKafka(), names);
  const metrics = new PromStageMetrics({ processMetrics: false });
  const knowledge = await openKnowledge(config, SILENT_LOGGER, metrics);
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, { logger: SILENT_LOGGER, metrics, knowledge, modelLoader: createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER }), modelCatalog: modelDirectoryCatalog(modelDir) });
    assert.equal(stage.knowledge?.available, false);
    assert.match(await metrics.text(), /^rmbert_kg_available 0$/m);
  } finally {
    await stage?.stop(5000);
    await knowledge.close();
    await tmp.remove();
  }
});

test('a micro-batch that hangs (the model does not return) turns the stage not ready as stalled, and ready again when it moves', async () => {
  const names = testNames('stage-stall');
  const tmp = await tempDir('rmbert-stall');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 8 });
  await writeFile(path.join(tmp.dir, 'kg.spo'), '支气管肺炎\t类别\t疾病\n');
  const config = stageConfig(names, modelDir, { embedded: true, 'knowledge.kgFile': path.join(tmp.dir, 'kg.spo') });
  await createTopics(testKafka(), names);
  // The real model, whose classify waits while `hold` is set: a hang the stage cannot see from inside.
  let hold = true;
  const inner = createModelLoader({ engine: 'onnx', logger: SILENT_LOGGER });
  const holding: ModelLoader = {
    async load(request) {
      const model = await inner.load(request);
      return delegatingModel(model, {
        classify: async (sentences) => {
          while (hold) await new Promise((r) => setTimeout(r, 50));
          return model.classify(sentences);
        },
      });
    },
  };
  const outputs = await Collector.start(testKafka(), names.output, decodeAnnotations);
  const producer = await TestProducer.connect(testKafka());
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, {
      logger: SILENT_LOGGER,
      knowledge: await openKnowledge(config, SILENT_LOGGER),
      modelLoader: holding,
      modelCatalog: modelDirectoryCatalog(modelDir),
      stalledAfterMs: 1500,
    });
    await waitUntil('ready', () => stage!.readiness().ready);
    const docs = (await sampleDocuments()).slice(0, 4).map((d, i) => ({ ...d, id: `stall-${i}` }));
    await producer.documents(names.input, docs);
    await waitUntil('stalled', () => stage!.readiness().checks.notStalled === false, 30_000);
    const r = stage.readiness();
    assert.equal(r.ready, false);
    assert.match(r.reasons?.join(' ') ?? '', /no micro-batch committed for \d+ s while records of partition \d are in progress/);
    hold = false;
    await outputs.waitFor(docs.length);
    await waitUntil('ready again', () => stage!.readiness().ready);
    assert.deepEqual(outputs.items.map((o) => o.record.documentId).sort(), docs.map((d) => d.id).sort());
  } finally {
    hold = false;
    await stage?.stop(10_000);
    await producer.close();
    await outputs.close();
    await tmp.remove();
  }
});
