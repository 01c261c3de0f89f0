/**
 * Neo4j unreachable mid-stream: the stage keeps flowing, marks outputs whose concept names it could
 * not look up as kgDegraded (cached knowledge still serves), retries the graph with backoff and
 * returns to normal by itself.
 *
 * By default the outage is a cut of the network path (a TCP relay between the stage and the real
 * Neo4j drops every connection and refuses new ones), so the shared Neo4j other tests use stays up.
 * RMBERT_TEST_STOP_NEO4J=1 stops and restarts the Neo4j server itself with scripts/infra.sh instead.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { createModelLoader, modelDirectoryCatalog, openKnowledge } from '../../../src/cli/stage-wiring.ts';
import type { Document } from '../../../src/domain/index.ts';
import { PromStageMetrics } from '../../../src/metrics/index.ts';
import { startStage, type StageHandle } from '../../../src/stream/stage.ts';
import { NEO4J_URI } from '../../helpers/infra.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { writeRandomArtifact } from './artifact.ts';
import { Collector, TcpCut, TestProducer, capturingLogger, createTopics, decodeAnnotations, loadTestGraph, stageConfig, tempDir, testKafka, testNames } from './harness.ts';

const REAL_STOP = process.env.RMBERT_TEST_STOP_NEO4J === '1';
/** Concept names of Medical.spo, each used once so that it is not cached when it is first looked up. */
const NAMES = ['胸部CT', '移动性浊音', '颈椎退行性变', '咽部充血', '结膜充血', '甲状腺大部切除术', '静脉曲张', '上肢麻木', '叩诊清音', '胸膜摩擦音', '全身皮肤黏膜', '肋骨骨折', '椎体棘突', '双扁桃体', '躯干及臀部', '颈椎X光片', '上腹部CT', '三维重建'];

function infra(...args: string[]): void {
  execFileSync('bash', [path.join(REPO_ROOT, 'scripts/infra.sh'), ...args], { stdio: 'inherit' });
}

test('Neo4j unreachable mid-stream: outputs flow marked kgDegraded, then recover by themselves', { timeout: 300_000 }, async () => {
  const names = testNames('stage-kg-outage');
  const tmp = await tempDir('rmbert-kg');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 7 });
  const graph = await loadTestGraph(names, [...NAMES, '支气管肺炎'].map((n) => `诊断${n}`), tmp.dir);
  const target = new URL(NEO4J_URI.replace(/^bolt/, 'http'));
  const relay = new TcpCut(target.hostname, Number(target.port));
  if (!REAL_STOP) await relay.open();
  const lines: string[] = [];
  const logger = capturingLogger(lines);
  const metrics = new PromStageMetrics({ processMetrics: false });
  const config = stageConfig(names, modelDir, REAL_STOP ? {} : { 'neo4j.uri': `bolt://127.0.0.1:${relay.port}` });
  const knowledge = await openKnowledge(config, logger, metrics);
  const kafka = testKafka();
  await createTopics(kafka, names);
  const producer = await TestProducer.connect(kafka);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  let stage: StageHandle | null = null;
  let n = 0;
  const annotate = async (text: string) => {
    const id = `kg-${n++}`;
    const doc: Document = { id, sourceSystem: 't', patientRef: `pt-${id}`, text, language: 'zh', createdAt: Date.now(), section: null };
    await producer.documents(names.input, [doc]);
    const deadline = Date.now() + 60_000;
    for (;;) {
      const found = outputs.items.find((o) => o.record.documentId === id);
      if (found) return found.record;
      if (Date.now() > deadline) assert.fail(`no output for ${id}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  };
  let outage = false;
  try {
    stage = await startStage(config, {
      logger,
      metrics,
      knowledge,
      modelLoader: createModelLoader({ engine: 'onnx', logger }),
      modelCatalog: modelDirectoryCatalog(modelDir),
    });

    const before = await annotate('患者诊断为支气管肺炎。');
    assert.equal(before.kgDegraded, false);
    assert.match(before.kgVersion, /^[0-9a-f]{64}$/);

    outage = true;
    if (REAL_STOP) infra('down', 'neo4j');
    else await relay.cut();

    const uncached = await annotate(`行${NAMES[0]}检查。`);
    assert.equal(uncached.kgDegraded, true, 'a name never looked up cannot be known while the graph is down');
    assert.equal(uncached.kgVersion, before.kgVersion, 'the graph version in force is still reported');
    const cached = await annotate('诊断支气管肺炎。');
    assert.equal(cached.kgDegraded, false, 'a cached name keeps its knowledge');
    assert.match(await metrics.text(), /rmbert_kg_available 0/);
    assert.ok(lines.some((l) => l.includes('knowledge graph unavailable')));
    // Still flowing with knowledge unavailable.
    for (const name of NAMES.slice(1, 3)) assert.equal((await annotate(`查体：${name}。`)).kgDegraded, true);

    if (REAL_STOP) infra('up', 'neo4j');
    else await relay.open();
    outage = false;

    let recovered = false;
    for (const name of NAMES.slice(3)) {
      const out = await annotate(`查体：${name}。`);
      if (!out.kgDegraded) {
        recovered = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 500));
    }
    assert.ok(recovered, 'outputs stopped being kgDegraded after the graph came back');
    assert.match(await metrics.text(), /rmbert_kg_available 1/);
    assert.ok(lines.some((l) => l.includes('knowledge graph reachable again')));
    assert.match(await metrics.text(), /rmbert_kg_degraded_total [3-9]/);
    assert.equal(stage.counters().deadLettered, 0, 'nothing was dead-lettered for the outage');
  } finally {
    if (outage) {
      if (REAL_STOP) infra('up', 'neo4j');
      else await relay.open();
    }
    await stage?.stop(10_000);
    await outputs.close();
    await producer.close();
    await knowledge.close();
    await relay.close();
    await graph.drop();
    await tmp.remove();
  }
});
