import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ERROR_CLASSES, PromStageMetrics, STAGES, startMetricsServer } from '../../../src/metrics/index.ts';
import { DEAD_LETTER_CLASSES } from '../../../src/pipeline/errors.ts';
import { STAGE_NAMES, type StageMetrics } from '../../../src/pipeline/ports.ts';

test('the prom-client metrics implement the pipeline port and cover its stages and error classes', () => {
  const m: StageMetrics = new PromStageMetrics({ processMetrics: false });
  assert.ok(m);
  assert.deepEqual([...STAGES].sort(), [...STAGE_NAMES].sort());
  for (const c of DEAD_LETTER_CLASSES) assert.ok((ERROR_CLASSES as readonly string[]).includes(c), c);
});

test('counters, histograms and info gauges show up with bounded labels', async () => {
  const m = new PromStageMetrics({ processMetrics: false });
  m.recordsIn(5);
  m.recordsOut(4);
  m.deadLettered('InferenceError');
  m.deadLettered('SomethingNew: 患者 P-1'); // unknown class: counted as Other, never as a new label
  m.stageSeconds('infer', 0.02);
  m.microBatch(5, 1000, 0.05);
  m.endToEndSeconds(0.1);
  m.kgCache(3, 1);
  m.kgDegraded(2);
  m.kgAvailable(false);
  m.consumerLag('emr.documents', 0, 17);
  m.modelServed('m+111', 'onnxruntime-cpu');
  m.modelServed('m+222', 'onnxruntime-cpu');
  m.modelSwap('installed');
  m.transactionAborted();
  const text = await m.text();
  assert.match(text, /rmbert_records_in_total 5/);
  assert.match(text, /rmbert_records_out_total 4/);
  assert.match(text, /rmbert_records_dead_lettered_total\{error_class="InferenceError"\} 1/);
  assert.match(text, /rmbert_records_dead_lettered_total\{error_class="Other"\} 1/);
  assert.doesNotMatch(text, /患者|P-1|SomethingNew/);
  assert.match(text, /rmbert_stage_seconds_count\{stage="infer"\} 1/);
  assert.match(text, /rmbert_stage_seconds_count\{stage="decode"\} 0/, 'children are bound up front');
  assert.match(text, /rmbert_kg_cache_hits_total 3/);
  assert.match(text, /rmbert_kg_cache_misses_total 1/);
  assert.match(text, /rmbert_kg_degraded_total 2/);
  assert.match(text, /rmbert_kg_available 0/);
  assert.match(text, /rmbert_consumer_lag\{topic="emr.documents",partition="0"\} 17/);
  assert.match(text, /rmbert_model_info\{version="m\+222",engine="onnxruntime-cpu"\} 1/);
  assert.doesNotMatch(text, /version="m\+111"/, 'only the model serving now');
  assert.match(text, /rmbert_model_swaps_total\{outcome="installed"\} 1/);
  assert.match(text, /rmbert_transactions_aborted_total 1/);
  assert.match(text, /rmbert_end_to_end_seconds_count 1/);
});

test('two stages in one process keep separate registries', async () => {
  const a = new PromStageMetrics({ processMetrics: true });
  const b = new PromStageMetrics({ processMetrics: true });
  a.recordsIn(1);
  assert.match(await a.text(), /rmbert_records_in_total 1/);
  assert.match(await b.text(), /rmbert_records_in_total 0/);
  assert.match(await a.text(), /rmbert_process_cpu_seconds_total/);
});

test('/metrics, /healthz and /readyz over HTTP', async () => {
  const m = new PromStageMetrics({ processMetrics: false });
  let ready = false;
  const server = await startMetricsServer({ registry: m.registry, port: 0, host: '127.0.0.1', readiness: () => ({ ready, checks: { consumerJoined: ready, modelLoaded: true } }) });
  try {
    const metrics = await fetch(`${server.url}/metrics`);
    assert.equal(metrics.status, 200);
    assert.match(metrics.headers.get('content-type') ?? '', /text\/plain/);
    assert.match(await metrics.text(), /rmbert_records_in_total/);
    assert.equal((await fetch(`${server.url}/healthz`)).status, 200);
    const notReady = await fetch(`${server.url}/readyz`);
    assert.equal(notReady.status, 503);
    assert.deepEqual(await notReady.json(), { status: 'not ready', checks: { consumerJoined: false, modelLoaded: true } });
    ready = true;
    assert.equal((await fetch(`${server.url}/readyz`)).status, 200);
    assert.equal((await fetch(`${server.url}/nope`)).status, 404);
  } finally {
    await server.close();
  }
});
