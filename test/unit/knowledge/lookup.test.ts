import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import type { Triple } from '../../../src/domain/index.ts';
import { KnowledgeUnavailableError, RmBertError } from '../../../src/errors/index.ts';
import { LruCache, TripleLookup } from '../../../src/knowledge/index.ts';
import type { KnowledgeMetrics } from '../../../src/knowledge/index.ts';
import { FlakyGraph } from './flaky-graph.ts';

const t = (subject: string, relation: string, object: string): Triple => ({ subject, relation, object });

class CountingMetrics implements KnowledgeMetrics {
  hits = 0;
  misses = 0;
  queries: number[] = [];
  onCacheHit(n: number): void {
    this.hits += n;
  }
  onCacheMiss(n: number): void {
    this.misses += n;
  }
  onQuery(ms: number): void {
    this.queries.push(ms);
  }
}

async function graphWith(triples: Triple[]): Promise<FlakyGraph> {
  const g = new FlakyGraph();
  await g.mergeTriples(triples);
  return g;
}

describe('LruCache', () => {
  it('evicts the least recently used entry', () => {
    const c = new LruCache<string, number>(2);
    c.set('a', 1);
    c.set('b', 2);
    assert.equal(c.get('a'), 1); // a is now the most recent
    c.set('c', 3);
    assert.equal(c.has('b'), false);
    assert.equal(c.get('a'), 1);
    assert.equal(c.get('c'), 3);
    c.set('a', 10); // update refreshes
    c.set('d', 4);
    assert.equal(c.has('c'), false);
    assert.equal(c.peek('a'), 10);
    assert.equal(c.size, 2);
    assert.throws(() => new LruCache(0), /positive integer/);
  });
});

describe('TripleLookup', () => {
  const triples = [t('肺炎', '类别', '疾病'), t('肺炎', '类别', '症状'), t('肺炎', '别名', '肺部感染'), t('咳嗽', '类别', '症状')];

  it('makes one round trip per batch for the names not cached, capped at maxEntities per name', async () => {
    const g = await graphWith(triples);
    const metrics = new CountingMetrics();
    const lookup = new TripleLookup(g, { maxEntities: 2, metrics });
    const first = await lookup.lookup(['肺炎', '咳嗽', '发热', '肺炎']);
    assert.deepEqual(g.calls, [['肺炎', '咳嗽', '发热']]);
    assert.deepEqual(first.get('肺炎'), [t('肺炎', '别名', '肺部感染'), t('肺炎', '类别', '疾病')]);
    assert.deepEqual(first.get('发热'), []);
    assert.equal(metrics.misses, 3);
    assert.equal(metrics.hits, 0);
    assert.equal(metrics.queries.length, 1);

    // Cached, negatives included: no round trip.
    const second = await lookup.lookup(['发热', '咳嗽']);
    assert.equal(g.calls.length, 1);
    assert.deepEqual(second.get('咳嗽'), [t('咳嗽', '类别', '症状')]);
    assert.deepEqual(second.get('发热'), []);
    assert.equal(metrics.hits, 2);

    // A batch mixing cached and new names asks only for the new ones.
    await lookup.lookup(['肺炎', '头痛']);
    assert.deepEqual(g.calls[1], ['头痛']);
    assert.equal(lookup.roundTrips, 2);
    assert.equal(metrics.queries.length, 2);
    // Nothing to ask: no round trip.
    await lookup.lookup([]);
    assert.equal(lookup.roundTrips, 2);
  });

  it('is bounded: old names are evicted and fetched again', async () => {
    const g = await graphWith(triples);
    const lookup = new TripleLookup(g, { maxEntities: 2, cacheSize: 2 });
    await lookup.lookup(['肺炎', '咳嗽', '发热']);
    assert.equal(lookup.cacheSize, 2);
    await lookup.lookup(['肺炎']);
    assert.equal(g.calls.length, 2);
  });

  it('throws KnowledgeUnavailableError (retriable) when the graph is down, and serves the cache meanwhile', async () => {
    const g = await graphWith(triples);
    const metrics = new CountingMetrics();
    const lookup = new TripleLookup(g, { maxEntities: 2, metrics });
    await lookup.lookup(['咳嗽']);
    g.down = true;
    await assert.rejects(lookup.lookup(['咳嗽', '肺炎']), (e: unknown) => e instanceof KnowledgeUnavailableError && e.retriable);
    assert.equal(metrics.queries.length, 2, 'a failed query is still timed');
    const degraded = lookup.lookupCached(['咳嗽', '肺炎']);
    assert.deepEqual([...degraded.triples], [['咳嗽', [t('咳嗽', '类别', '症状')]]]);
    assert.deepEqual(degraded.missing, ['肺炎']);
    // The failure cached nothing: once the graph is back, the name is fetched.
    g.down = false;
    assert.equal((await lookup.lookup(['肺炎'])).get('肺炎')?.length, 2);
  });

  it('wraps unexpected errors in an RmBertError with the cause', async () => {
    const g = await graphWith(triples);
    g.triplesOf = async () => {
      throw new TypeError('boom');
    };
    const lookup = new TripleLookup(g, { maxEntities: 2 });
    await assert.rejects(lookup.lookup(['肺炎']), (e: unknown) => e instanceof RmBertError && !e.retriable && e.cause instanceof TypeError);
  });

  it('asks nothing when maxEntities is 0', async () => {
    const g = await graphWith(triples);
    const lookup = new TripleLookup(g, { maxEntities: 0 });
    assert.deepEqual((await lookup.lookup(['肺炎'])).get('肺炎'), []);
    assert.equal(g.calls.length, 0);
  });
});
