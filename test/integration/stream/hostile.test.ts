/**
 * Issue 15 item 8, quick case: the generated hostile corpus (test/integration/harness/hostile.ts, over
 * 200 cases) through one stage on the real Kafka and Neo4j. Every case comes out exactly once, as an
 * output or a dead letter (read_committed), malformed and invalid-UTF-8 records as dead letters; the
 * stage keeps running, the graph is unchanged, and no case's content reaches the logs.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { Partitioners } from 'kafkajs';
import { createModelLoader, modelDirectoryCatalog, openKnowledge } from '../../../src/cli/stage-wiring.ts';
import { startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { accountHostile, hostileCorpus, type Placed } from '../harness/hostile.ts';
import { waitFor } from '../harness/serve.ts';
import { writeRandomArtifact } from './artifact.ts';
import { Collector, capturingLogger, createTopics, decodeAnnotations, decodeDeadLetter, loadTestGraph, sampleDocuments, stageConfig, tempDir, testKafka, testNames } from './harness.ts';

test('a hostile corpus of over 200 cases: each exactly once, malformed ones dead-lettered, graph unchanged, nothing in the logs', { timeout: 600_000 }, async () => {
  const names = testNames('stage-hostile');
  const tmp = await tempDir('rmbert-hostile');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 15 });
  const samples = await sampleDocuments();
  const graph = await loadTestGraph(names, samples.map((d) => d.text), tmp.dir);
  const statsBefore = await graph.graph.stats();
  const kafka = testKafka();
  await createTopics(kafka, names, 2);
  const lines: string[] = [];
  const logger = capturingLogger(lines);
  const config = stageConfig(names, modelDir, { 'batch.maxRecords': 16 });
  const knowledge = await openKnowledge(config, logger);
  const corpus = hostileCorpus({ maxTextChars: config.maxTextChars, prefix: names.group });
  assert.ok(corpus.length >= 200, `${corpus.length} cases`);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  const dead = await Collector.start(kafka, names.deadLetter, decodeDeadLetter);
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  let stage: StageHandle | null = null;
  try {
    stage = await startStage(config, { logger, knowledge, modelLoader: createModelLoader({ engine: 'onnx', logger }), modelCatalog: modelDirectoryCatalog(modelDir) });
    let failed: unknown = null;
    stage.finished.catch((e: unknown) => (failed = e));
    // One record per send, on alternate partitions, so each case's offset is the send's base offset.
    const placed: Placed[] = [];
    for (const c of corpus) {
      const partition = c.n % 2;
      const [meta] = await producer.send({ topic: names.input, acks: -1, messages: [{ key: c.key, value: c.value, partition }] });
      placed.push({ ...c, partition, offset: meta.baseOffset! });
    }
    const lost = () => accountHostile(placed, names.input, outputs.items, dead.items).unhandled.filter((u) => u.endsWith(': lost'));
    await waitFor('every case out', () => lost().length === 0, 420_000, 500).catch((e: Error) => {
      throw new Error(`${e.message}: ${lost().slice(0, 10).join('; ')}`);
    });
    assert.equal(failed, null, 'the stage kept running');
    assert.equal(stage.readiness().ready, true);
    const { clean } = await stage.stop();
    stage = null;
    assert.ok(clean, 'the stop was clean');
    // Everything is committed; anything extra would be a duplicate.
    await new Promise((r) => setTimeout(r, 2000));
    const account = accountHostile(placed, names.input, outputs.items, dead.items);
    assert.deepEqual(account.unhandled, [], `${account.unhandled.length} of ${account.cases} cases not handled`);
    assert.deepEqual(await graph.graph.stats(), statsBefore, 'the graph is unchanged');
    const log = lines.join('\n');
    for (const secret of ['SECRET', 'DETACH DELETE', 'DROP TABLE', '<script>', 'etc/passwd', '头痛']) assert.ok(!log.includes(secret), `"${secret}" in the logs`);
    const byKind = new Map<string, number>();
    for (const d of dead.items) byKind.set(d.record.errorClass, (byKind.get(d.record.errorClass) ?? 0) + 1);
    console.log(`${account.cases} hostile cases: ${outputs.items.length} output records, ${dead.items.length} dead letters (${[...byKind].map(([k, v]) => `${k} ${v}`).join(', ')}); 0 unhandled`);
  } finally {
    await stage?.stop().catch(() => undefined);
    await producer.disconnect();
    await outputs.close();
    await dead.close();
    await knowledge?.close().catch(() => undefined);
    await graph.drop();
    await tmp.remove();
  }
});
