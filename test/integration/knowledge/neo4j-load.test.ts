/** Loading the real graphs into real Neo4j, by library and by `rmbert kg load`, and the version swap. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { promisify } from 'node:util';
import { KnowledgeService, loadSpoFile, Neo4jKnowledgeGraph } from '../../../src/knowledge/index.ts';
import { NEO4J_PASSWORD, NEO4J_URI, NEO4J_USER } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const run = promisify(execFile);
const MEDICAL = path.join(REPO_ROOT, 'data/kg/Medical.spo');
const MEDICAL_VERSION = '728f8070a8d99ff78503c83870f361c1746a38b169e9b86e610608803abed6b1';
const dir = mkdtempSync(path.join(tmpdir(), 'rmbert-kgload-'));
const opened: Neo4jKnowledgeGraph[] = [];
const connect = (graphName = uniqueName('kgload')): Neo4jKnowledgeGraph => {
  const g = new Neo4jKnowledgeGraph({ uri: NEO4J_URI, user: NEO4J_USER, password: NEO4J_PASSWORD, graphName });
  opened.push(g);
  return g;
};
after(async () => {
  for (const g of opened) {
    await g.clear().catch(() => undefined);
    await g.close();
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('loading .spo files into Neo4j', () => {
  it('loads Medical.spo completely, stamps it, and a second load changes nothing', async () => {
    const g = connect();
    const first = await loadSpoFile(MEDICAL, g, { batchSize: 2000 });
    assert.equal(first.malformedCount, 0);
    assert.deepEqual(await g.stats(), { concepts: 13_558, triples: 13_864 });
    assert.equal(first.stamp.version, MEDICAL_VERSION);
    assert.deepEqual(await g.stamp(), first.stamp);
    const again = await loadSpoFile(MEDICAL, g, { batchSize: 500 });
    assert.equal(again.stamp.version, MEDICAL_VERSION);
    assert.deepEqual(await g.stats(), { concepts: 13_558, triples: 13_864 });
    const found = await g.triplesOf(['支气管肺炎', '右踝'], 2);
    assert.deepEqual(found.get('支气管肺炎'), [{ subject: '支气管肺炎', relation: '类别', object: '疾病' }]);
  });

  it('the service swaps to a reloaded graph without restarting', async () => {
    const g = connect();
    const one = path.join(dir, 'one.spo');
    const two = path.join(dir, 'two.spo');
    writeFileSync(one, '新冠肺炎\t类别\t疾病\n呼吸道\t类别\t部位\n');
    writeFileSync(two, '新冠肺炎\t类别\t疾病\n飞沫\t类别\t症状\n');
    await loadSpoFile(one, g);
    const service = await KnowledgeService.open(g, { maxEntities: 2 });
    const text = '新冠肺炎可通过呼吸道飞沫传播';
    assert.deepEqual(
      service.current.matcher.match(text).map((m) => m.key),
      ['新冠肺炎', '呼吸道'],
    );
    await loadSpoFile(two, g, { replace: true });
    assert.equal(await service.refresh(), true);
    assert.deepEqual(
      service.current.matcher.match(text).map((m) => m.key),
      ['新冠肺炎', '飞沫'],
    );
    assert.deepEqual((await service.current.lookup.lookup(['飞沫'])).get('飞沫'), [{ subject: '飞沫', relation: '类别', object: '症状' }]);
    await service.close();
  });

  it('rmbert kg load: progress, malformed lines with line numbers, counts, version; kg info', async () => {
    const graph = uniqueName('kgcli');
    const g = connect(graph);
    const file = path.join(dir, 'mixed.spo');
    writeFileSync(file, '肺炎\t类别\t疾病\nno tabs here\n咳嗽\t类别\t症状\n肺炎\t类别\t疾病\n\u0007x\t类别\t症状\n');
    const args = ['bin/rmbert.js', 'kg', 'load', file, '--graph', graph, '--neo4j-uri', NEO4J_URI, '--neo4j-user', NEO4J_USER, '--neo4j-password', NEO4J_PASSWORD, '--batch-size', '1'];
    const { stdout, stderr } = await run(process.execPath, args, { cwd: REPO_ROOT });
    assert.match(stderr, new RegExp(`${file}:2: expected 3 tab-separated fields, found 1`));
    assert.match(stderr, new RegExp(`${file}:5: subject contains control character U\\+0007`));
    assert.match(stdout, /5 lines, 3 valid triples \(2 distinct, 1 duplicate\), 2 malformed skipped/);
    assert.match(stdout, /now holds 2 triples between 4 concepts/);
    assert.match(stdout, /KG version [0-9a-f]{64}/);
    assert.deepEqual(await g.stats(), { concepts: 4, triples: 2 });
    const info = await run(process.execPath, ['bin/rmbert.js', 'kg', 'info', '--graph', graph, '--neo4j-uri', NEO4J_URI], { cwd: REPO_ROOT });
    assert.match(info.stdout, /2 triples between 4 concepts/);
    assert.match(info.stdout, /KG version [0-9a-f]{64} \(loaded .* from mixed\.spo\)/);
  });

  it('rmbert kg load of several files leaves their union, stamped as kg merge stamps the merged file', async () => {
    const graph = uniqueName('kgmulti');
    const g = connect(graph);
    const main = path.join(dir, 'main.spo');
    const terms = path.join(dir, 'terms.spo');
    const merged = path.join(dir, 'merged.spo');
    writeFileSync(main, '肺炎\t类别\t疾病\n咳嗽\t类别\t症状\n');
    writeFileSync(terms, '咳嗽\t类别\t症状\n咳痰\t词表\t症状\n');
    const neo4j = ['--graph', graph, '--neo4j-uri', NEO4J_URI, '--neo4j-user', NEO4J_USER, '--neo4j-password', NEO4J_PASSWORD, '--no-progress'];
    // A first load of something else, replaced by the two files.
    writeFileSync(path.join(dir, 'old.spo'), '旧\t类别\t疾病\n');
    await run(process.execPath, ['bin/rmbert.js', 'kg', 'load', path.join(dir, 'old.spo'), ...neo4j], { cwd: REPO_ROOT });
    const { stdout } = await run(process.execPath, ['bin/rmbert.js', 'kg', 'load', main, terms, '--replace', ...neo4j], { cwd: REPO_ROOT });
    const mergedOut = await run(process.execPath, ['bin/rmbert.js', 'kg', 'merge', main, terms, '--out', merged], { cwd: REPO_ROOT });
    const version = /KG version ([0-9a-f]{64})/.exec(mergedOut.stdout)![1];
    assert.deepEqual(await g.stats(), { concepts: 5, triples: 3 });
    assert.equal((await g.stamp())!.version, version);
    assert.match(stdout, new RegExp(`now holds 3 triples between 5 concepts\nKG version ${version} \\(the file alone: [0-9a-f]{64}\\)`));
  });
});
