/**
 * The commands against the real Neo4j of scripts/infra.sh: rejected credentials are a configuration
 * error in `serve` and in `kg` alike (exit 2 at start), `kg` reads serve's RMBERT_NEO4J_* and
 * RMBERT_KG_GRAPH variables, a file without a single triple loads nothing and keeps the graph's
 * version, and the stage counts a graph's concepts as `kg info` does.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { openKnowledge } from '../../../src/cli/stage-wiring.ts';
import { buildConfig } from '../../../src/config/index.ts';
import { Neo4jKnowledgeGraph } from '../../../src/knowledge/index.ts';
import { createJsonLogger } from '../../../src/pipeline/logging.ts';
import { NEO4J_PASSWORD, NEO4J_URI, NEO4J_USER } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const dir = mkdtempSync(path.join(os.tmpdir(), 'rmbert-graph-store-'));
const graphs: string[] = [];
after(async () => {
  rmSync(dir, { recursive: true, force: true });
  for (const name of graphs) {
    const g = new Neo4jKnowledgeGraph({ uri: NEO4J_URI, user: NEO4J_USER, password: NEO4J_PASSWORD, graphName: name });
    await g.clear().catch(() => undefined);
    await g.close();
  }
});

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs rmbert with only the given environment (plus PATH and HOME), so nothing leaks in from the test runner. */
function rmbert(args: string[], env: Record<string, string>): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [path.join(REPO_ROOT, 'bin/rmbert.js'), ...args],
      { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env }, timeout: 120_000 },
      (error, stdout, stderr) => resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const serverEnv = { RMBERT_NEO4J_URI: NEO4J_URI, RMBERT_NEO4J_USER: NEO4J_USER, RMBERT_NEO4J_PASSWORD: NEO4J_PASSWORD };

/** Two subjects, three objects: 5 concepts, of which 2 are names the stage matches. */
const SMALL = '肺炎\t类别\t疾病\n咳嗽\t类别\t症状\n咳嗽\t部位\t肺\n';

function info(run: Run): { triples: number; concepts: number; subjects: number; version: string } {
  const counts = /(\d+) triples between (\d+) concepts, (\d+) of them subjects/.exec(run.stdout);
  const version = /KG version ([0-9a-f]{64})/.exec(run.stdout);
  assert.ok(counts && version, run.stdout + run.stderr);
  return { triples: Number(counts[1]), concepts: Number(counts[2]), subjects: Number(counts[3]), version: version[1] };
}

test('a wrong Neo4j password stops serve at start with exit 2, as it stops kg info', { timeout: 120_000 }, async () => {
  const wrong = { ...serverEnv, RMBERT_NEO4J_PASSWORD: 'not-the-password' };
  const kg = await rmbert(['kg', 'info'], wrong);
  assert.equal(kg.code, 2, kg.stderr);
  assert.match(kg.stderr, /rejected user "neo4j"/);
  // Kafka is up (scripts/test.sh), so the graph is the only thing wrong here.
  const serve = await rmbert(['serve'], { ...wrong, RMBERT_KAFKA_BROKERS: process.env.RMBERT_TEST_KAFKA_BROKERS ?? '127.0.0.1:19092', RMBERT_METRICS_PORT: '0', RMBERT_METRICS_HOST: '127.0.0.1' });
  assert.equal(serve.code, 2, serve.stderr);
  assert.match(serve.stderr, /rejected user "neo4j".*check the user name and password/);
  assert.match(serve.stdout, /"msg":"could not start".*"errorClass":"ConfigError"/);
});

test('kg reads RMBERT_NEO4J_* and RMBERT_KG_GRAPH; a binary file fails and leaves the graph as it was', { timeout: 120_000 }, async () => {
  const graph = uniqueName('kgenv');
  graphs.push(graph);
  const env = { ...serverEnv, RMBERT_KG_GRAPH: graph };
  const good = path.join(dir, 'small.spo');
  writeFileSync(good, SMALL);
  const load = await rmbert(['kg', 'load', good, '--no-progress'], env);
  assert.equal(load.code, 0, load.stderr);
  const before = info(await rmbert(['kg', 'info'], env));
  assert.deepEqual({ triples: before.triples, concepts: before.concepts, subjects: before.subjects }, { triples: 3, concepts: 5, subjects: 2 });

  const binary = path.join(dir, 'model.bin');
  writeFileSync(binary, randomBytes(64 * 1024));
  for (const args of [[], ['--replace']]) {
    const bad = await rmbert(['kg', 'load', binary, '--no-progress', ...args], env);
    assert.equal(bad.code, 1, `kg load ${args.join(' ')} of a binary file: ${bad.stdout}${bad.stderr}`);
    assert.match(bad.stderr, /holds no valid triple/);
    assert.deepEqual(info(await rmbert(['kg', 'info'], env)), before, 'the graph and its version are unchanged');
  }
  const empty = path.join(dir, 'empty.spo');
  writeFileSync(empty, '');
  assert.equal((await rmbert(['kg', 'load', empty, '--no-progress'], env)).code, 1);
});

test('the stage counts the graph\'s concepts as kg info does', { timeout: 120_000 }, async () => {
  const graph = uniqueName('kgcount');
  graphs.push(graph);
  const file = path.join(dir, 'count.spo');
  writeFileSync(file, SMALL);
  const env = { ...serverEnv, RMBERT_KG_GRAPH: graph };
  assert.equal((await rmbert(['kg', 'load', file, '--no-progress'], env)).code, 0);
  const shown = info(await rmbert(['kg', 'info'], env));

  const lines: string[] = [];
  const logger = createJsonLogger({ sink: (l) => lines.push(l) });
  const config = buildConfig({ env, overrides: { 'knowledge.versionPollMs': 0 } });
  const knowledge = await openKnowledge(config, logger);
  try {
    const opened = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((e) => e.msg === 'knowledge graph opened');
    assert.ok(opened, lines.join('\n'));
    assert.equal(opened.concepts, shown.concepts);
    assert.equal(opened.triples, shown.triples);
    assert.equal(opened.subjects, shown.subjects);
    assert.equal(opened.kgVersion, shown.version);
  } finally {
    await knowledge.close();
  }
});
