/**
 * The Neo4j adapter against the real server (scripts/infra.sh): the shared contract, plus what only
 * a real database can show (constraint, concurrency, injection, unreachable server, bad password).
 * Every test works in its own graph (a unique `graph` property), so runs never see each other.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import neo4j from 'neo4j-driver';
import type { Triple } from '../../../src/domain/index.ts';
import { ConfigError, KnowledgeUnavailableError } from '../../../src/errors/index.ts';
import { Neo4jKnowledgeGraph, TripleLookup } from '../../../src/knowledge/index.ts';
import { NEO4J_PASSWORD, NEO4J_URI, NEO4J_USER } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';
import { HOSTILE_NAMES, knowledgeGraphContract } from '../../unit/knowledge/graph-contract.ts';

const connect = (graphName: string, overrides: Partial<{ uri: string; password: string }> = {}): Neo4jKnowledgeGraph =>
  new Neo4jKnowledgeGraph({ uri: NEO4J_URI, user: NEO4J_USER, password: NEO4J_PASSWORD, graphName, connectionTimeoutMs: 3000, ...overrides });

knowledgeGraphContract('neo4j', async (graphName) => connect(graphName));

describe('Neo4jKnowledgeGraph (real server)', () => {
  const opened: Neo4jKnowledgeGraph[] = [];
  const fresh = async (): Promise<Neo4jKnowledgeGraph> => {
    const g = connect(uniqueName('kgneo'));
    opened.push(g);
    await g.init();
    return g;
  };
  after(async () => {
    for (const g of opened) {
      await g.clear().catch(() => undefined);
      await g.close();
    }
  });

  it('creates the uniqueness constraint on (Concept.graph, Concept.name)', async () => {
    await fresh();
    const driver = neo4j.driver(NEO4J_URI, neo4j.auth.basic(NEO4J_USER, NEO4J_PASSWORD));
    try {
      const { records } = await driver.executeQuery('SHOW CONSTRAINTS YIELD name, type, labelsOrTypes, properties RETURN *');
      const c = records.find((r) => r.get('name') === 'rmbert_concept_graph_name');
      assert.ok(c, 'constraint rmbert_concept_graph_name exists');
      assert.equal(c.get('type'), 'UNIQUENESS');
      assert.deepEqual(c.get('labelsOrTypes'), ['Concept']);
      assert.deepEqual(c.get('properties'), ['graph', 'name']);
    } finally {
      await driver.close();
    }
  });

  it('stays idempotent when the same triples are merged concurrently', async () => {
    const g = await fresh();
    const triples: Triple[] = [];
    for (let i = 0; i < 400; i++) triples.push({ subject: `并发${i}`, relation: '类别', object: i % 2 ? '疾病' : '症状' });
    await Promise.all([g.mergeTriples(triples), g.mergeTriples(triples), g.mergeTriples([...triples].reverse())]);
    assert.deepEqual(await g.stats(), { concepts: 402, triples: 400 });
  });

  it('hostile names in one graph cannot touch another graph', async () => {
    const sentinel = await fresh();
    await sentinel.mergeTriples([{ subject: '哨兵', relation: '类别', object: '部位' }]);
    const g = await fresh();
    for (const name of HOSTILE_NAMES) {
      await g.mergeTriples([{ subject: name, relation: name, object: name }]);
      await g.triplesOf([name], 2);
    }
    await g.clear();
    assert.deepEqual(await sentinel.stats(), { concepts: 2, triples: 1 });
    assert.deepEqual((await sentinel.triplesOf(['哨兵'], 2)).get('哨兵'), [{ subject: '哨兵', relation: '类别', object: '部位' }]);
  });

  it('looks up a batch of names in one round trip', async () => {
    const g = await fresh();
    const triples: Triple[] = [];
    for (let i = 0; i < 300; i++) triples.push({ subject: `名${i}`, relation: '类别', object: '疾病' }, { subject: `名${i}`, relation: '类别', object: '症状' });
    await g.mergeTriples(triples);
    const queries: number[] = [];
    const lookup = new TripleLookup(g, { maxEntities: 1, metrics: { onCacheHit: () => undefined, onCacheMiss: () => undefined, onQuery: (ms) => queries.push(ms) } });
    const names = Array.from({ length: 320 }, (_, i) => `名${i}`);
    const found = await lookup.lookup(names);
    assert.equal(queries.length, 1);
    assert.equal(found.size, 320);
    assert.deepEqual(found.get('名7'), [{ subject: '名7', relation: '类别', object: '疾病' }]);
    assert.deepEqual(found.get('名310'), []);
    await lookup.lookup(names);
    assert.equal(queries.length, 1, 'second batch served from the cache, negatives included');
  });

  it('reports an unreachable server as KnowledgeUnavailableError (retriable), promptly', async () => {
    const g = connect(uniqueName('kgdown'), { uri: 'bolt://127.0.0.1:9' });
    try {
      const started = Date.now();
      await assert.rejects(g.triplesOf(['肺炎'], 2), (e: unknown) => e instanceof KnowledgeUnavailableError && e.retriable);
      await assert.rejects(g.stamp(), KnowledgeUnavailableError);
      await assert.rejects(g.mergeTriples([{ subject: 'a', relation: 'b', object: 'c' }]), KnowledgeUnavailableError);
      assert.ok(Date.now() - started < 20_000, 'fails within the timeouts');
    } finally {
      await g.close();
    }
  });

  it('reports wrong credentials as a ConfigError that says what to fix', async () => {
    const g = connect(uniqueName('kgauth'), { password: 'not-the-password' });
    try {
      await assert.rejects(g.stats(), (e: unknown) => e instanceof ConfigError && /rejected user "neo4j".*check the user name and password/.test(e.message));
    } finally {
      await g.close();
    }
  });
});
