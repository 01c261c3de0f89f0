/**
 * `rmbert serve` as a process: configuration from the environment, /readyz, /healthz, /metrics,
 * records through, SIGTERM finishing the in-flight work and exiting 0; a bad configuration exiting 2
 * with every problem listed.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import type { Document } from '../../../src/domain/index.ts';
import { KAFKA_BROKERS } from '../../helpers/infra.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { freePort, spawnServe } from '../harness/serve.ts';
import { writeRandomArtifact } from './artifact.ts';
import { Collector, TestProducer, createTopics, decodeAnnotations, sampleDocuments, tempDir, testKafka, testNames } from './harness.ts';

test('a bad configuration exits 2 and lists every problem', async () => {
  const serve = spawnServe({ RMBERT_ENGINE: 'gpu', RMBERT_METRICS_PORT: 'x', RMBERT_BATCH_MAX_RECORDS: '0', RMBERT_NEO4J_PASSWORD: '' });
  assert.equal(await serve.exited, 2);
  for (const p of ['model.engine (RMBERT_ENGINE)', 'metrics.port (RMBERT_METRICS_PORT)', 'batch.maxRecords (RMBERT_BATCH_MAX_RECORDS)', 'neo4j.password']) {
    assert.ok(serve.err().includes(p), `${p} missing from:\n${serve.err()}`);
  }
});

test('rmbert serve: ready, processes records, SIGTERM exits 0 after committing', { timeout: 240_000 }, async () => {
  const names = testNames('stage-cli');
  const tmp = await tempDir('rmbert-cli');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 9 });
  const kafka = testKafka();
  await createTopics(kafka, names, 1);
  const port = await freePort();
  const serve = spawnServe({
    RMBERT_KAFKA_BROKERS: KAFKA_BROKERS.join(','),
    RMBERT_INPUT_TOPIC: names.input,
    RMBERT_OUTPUT_TOPIC: names.output,
    RMBERT_DLQ_TOPIC: names.deadLetter,
    RMBERT_FEEDBACK_TOPIC: names.feedback,
    RMBERT_MODEL_UPDATES_TOPIC: names.modelUpdates,
    RMBERT_GROUP_ID: names.group,
    RMBERT_TRANSACTIONAL_ID_PREFIX: names.group,
    RMBERT_MODEL_DIR: modelDir,
    RMBERT_ENGINE: 'onnx',
    RMBERT_EMBEDDED: 'true',
    RMBERT_KG_FILE: path.join(REPO_ROOT, 'data/kg/Medical.spo'),
    RMBERT_METRICS_PORT: String(port),
    RMBERT_METRICS_HOST: '127.0.0.1',
    RMBERT_SHUTDOWN_DEADLINE_MS: '20000',
    RMBERT_LOG_LEVEL: 'debug',
  });
  const base = `http://127.0.0.1:${port}`;
  const producer = await TestProducer.connect(kafka);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  try {
    const readyBy = Date.now() + 120_000;
    let ready = false;
    while (!ready && Date.now() < readyBy) {
      ready = await fetch(`${base}/readyz`).then((r) => r.status === 200, () => false);
      if (!ready) await new Promise((r) => setTimeout(r, 250));
    }
    assert.ok(ready, `never ready; stderr:\n${serve.err()}\nstdout:\n${serve.out().slice(-3000)}`);
    assert.equal((await fetch(`${base}/healthz`)).status, 200);

    const samples = await sampleDocuments();
    const docs: Document[] = Array.from({ length: 30 }, (_, i) => ({ ...samples[i % samples.length], id: `cli-${i}`, patientRef: `pt-cli-secret-${i}` }));
    await producer.documents(names.input, docs.slice(0, 20));
    await outputs.waitFor(20, 60_000);
    assert.equal(outputs.items.length, 20);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    assert.match(metrics, /rmbert_records_out_total 20/);
    assert.match(metrics, /rmbert_model_info\{version="rmbert-random\+[0-9a-f]{12}",engine="onnxruntime-cpu"\} 1/);
    assert.match(metrics, /rmbert_ready 1/);

    // More records, then SIGTERM while they may be in flight: whatever was published was committed,
    // the rest stays for the next stage; the process exits 0 within the deadline.
    await producer.documents(names.input, docs.slice(20));
    const signalledAt = Date.now();
    serve.child.kill('SIGTERM');
    const code = await serve.exited;
    assert.equal(code, 0, serve.err());
    assert.ok(Date.now() - signalledAt < 20_000, 'exited within the shutdown deadline');
    const log = serve.out();
    const events = log.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; recordsOut?: number });
    const stopped = events.find((e) => e.msg === 'stopped');
    assert.ok(stopped, 'logged its final counters');
    for (const d of docs) {
      assert.ok(!log.includes(d.patientRef), 'no patient reference in the logs');
      assert.ok(!log.includes(d.text), 'no document text in the logs');
    }
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(outputs.items.length, stopped.recordsOut, 'every record the stage published is visible (committed), nothing else');
  } finally {
    if (serve.child.exitCode === null) serve.child.kill('SIGKILL');
    await outputs.close();
    await producer.close();
    await tmp.remove();
  }
});
