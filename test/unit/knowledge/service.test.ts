import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { KnowledgeUnavailableError } from '../../../src/errors/index.ts';
import {
  createSnapshot,
  KnowledgeInjector,
  KnowledgeService,
  loadSpoFile,
  staticKnowledge,
  triplesForMatch,
} from '../../../src/knowledge/index.ts';
import type { KnowledgeSnapshot } from '../../../src/knowledge/index.ts';
import { FlakyGraph } from './flaky-graph.ts';
import { TestTokenizer } from './test-tokenizer.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'rmbert-kgsvc-'));
after(() => rmSync(dir, { recursive: true, force: true }));
const spo = (name: string, content: string): string => {
  const p = path.join(dir, name);
  writeFileSync(p, content);
  return p;
};
const V1 = spo('v1.spo', '新冠肺炎\t类别\t疾病\n呼吸道\t类别\t部位\n');
const V2 = spo('v2.spo', '新冠肺炎\t类别\t疾病\n飞沫\t类别\t症状\n');

const tokenizer = new TestTokenizer();
const SENTENCE = '新冠肺炎可通过呼吸道飞沫传播';

describe('KnowledgeService', () => {
  it('swaps in a new matcher when the graph version changes, atomically', async () => {
    const g = new FlakyGraph();
    const v1 = await loadSpoFile(V1, g);
    const swaps: [string | null, string | null][] = [];
    const service = await KnowledgeService.open(g, { maxEntities: 2, onSwap: (next, prev) => swaps.push([prev.version, next.version]) });
    const before: KnowledgeSnapshot = service.current;
    assert.equal(before.version, v1.stamp.version);
    assert.deepEqual(
      before.matcher.match(SENTENCE).map((m) => m.key),
      ['新冠肺炎', '呼吸道'],
    );
    assert.equal(await service.refresh(), false);

    const v2 = await loadSpoFile(V2, g, { replace: true });
    assert.equal(await service.refresh(), true);
    assert.deepEqual(swaps, [[v1.stamp.version, v2.stamp.version]]);
    assert.deepEqual(
      service.current.matcher.match(SENTENCE).map((m) => m.key),
      ['新冠肺炎', '飞沫'],
    );
    // A batch holding the old snapshot still sees the old graph's names.
    assert.deepEqual(
      before.matcher.match(SENTENCE).map((m) => m.key),
      ['新冠肺炎', '呼吸道'],
    );
    assert.notEqual(service.current.lookup, before.lookup, 'a new version gets a fresh cache');
    await service.close();
  });

  it('keeps the current snapshot while a load is under way (no stamp) and when the graph is down', async () => {
    const g = new FlakyGraph();
    await loadSpoFile(V1, g);
    const service = await KnowledgeService.open(g, { maxEntities: 2 });
    const current = service.current;
    await g.setStamp(null);
    assert.equal(await service.refresh(), false);
    assert.equal(service.current, current);
    g.down = true;
    await assert.rejects(service.refresh(), KnowledgeUnavailableError);
    assert.equal(service.current, current);
  });

  it('shares one check between concurrent refreshes', async () => {
    const g = new FlakyGraph();
    await loadSpoFile(V1, g);
    const service = await KnowledgeService.open(g, { maxEntities: 2 });
    await loadSpoFile(V2, g, { replace: true });
    const results = await Promise.all([service.refresh(), service.refresh(), service.refresh()]);
    assert.deepEqual(results, [true, true, true]);
    assert.equal(await service.refresh(), false);
  });

  it('polls in the background and reports errors without stopping', async () => {
    const g = new FlakyGraph();
    await loadSpoFile(V1, g);
    const errors: unknown[] = [];
    let swapped!: () => void;
    const swappedPromise = new Promise<void>((resolve) => (swapped = resolve));
    const service = await KnowledgeService.open(g, { maxEntities: 2, onSwap: () => swapped(), onError: (e) => errors.push(e) });
    service.startPolling(5);
    g.down = true;
    await new Promise((resolve) => setTimeout(resolve, 30));
    assert.ok(errors.length > 0 && errors.every((e) => e instanceof KnowledgeUnavailableError));
    g.down = false;
    await loadSpoFile(V2, g, { replace: true });
    // The polling timer is unref'd (it must not keep a process alive); keep this test alive meanwhile.
    const keepAlive = setTimeout(() => undefined, 10_000);
    await swappedPromise;
    clearTimeout(keepAlive);
    assert.deepEqual(
      service.current.matcher.match(SENTENCE).map((m) => m.key),
      ['新冠肺炎', '飞沫'],
    );
    await service.close();
  });
});

describe('triplesForMatch', () => {
  it('merges the triples of several names with one normalised form, without repeats', () => {
    const found = new Map([
      ['CT', [{ subject: 'CT', relation: '类别', object: '检查' }]],
      [
        'ct',
        [
          { subject: 'ct', relation: '类别', object: '检查' },
          { subject: 'ct', relation: '别名', object: '计算机断层扫描' },
        ],
      ],
    ]);
    const merged = triplesForMatch({ names: ['CT', 'ct'] }, found, 5);
    assert.deepEqual(
      merged.map((t) => `${t.relation}${t.object}`),
      ['别名计算机断层扫描', '类别检查'],
    );
    assert.equal(triplesForMatch({ names: ['CT', 'ct'] }, found, 1).length, 1);
    assert.deepEqual(triplesForMatch({ names: ['x'] }, found, 2), []);
  });
});

describe('KnowledgeInjector', () => {
  it('injects a batch with one graph round trip, then from the cache', async () => {
    const g = new FlakyGraph();
    const { stamp } = await loadSpoFile(V1, g);
    const service = await KnowledgeService.open(g, { maxEntities: 2 });
    const injector = new KnowledgeInjector(tokenizer, service, { specialTokens: false });
    const batch = await injector.inject([{ text: SENTENCE }, { text: '呼吸道', start: 20 }, { text: '' }]);
    assert.equal(batch.roundTrips, 1);
    assert.deepEqual(g.calls, [['新冠肺炎', '呼吸道']]);
    assert.equal(batch.kgVersion, stamp.version);
    assert.equal(batch.degraded, false);
    const [tree] = batch.trees[0];
    assert.deepEqual([...tree.softPositions], [0, 1, 2, 3, 4, 5, 6, 7, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 10, 11, 12, 13]);
    assert.deepEqual([...batch.trees[1][0].charStart], [20, 21, 22, -1, -1, -1, -1]);
    assert.equal(batch.trees[2][0].tokenIds.length, 0);
    const again = await injector.inject([{ text: SENTENCE }]);
    assert.equal(again.roundTrips, 0);
    assert.equal(g.calls.length, 1);
  });

  it('keeps flowing with cached triples when the graph is down, and retries it later', async () => {
    const g = new FlakyGraph();
    await loadSpoFile(V1, g);
    let now = 0;
    const injector = new KnowledgeInjector(tokenizer, staticKnowledge(await createSnapshot(g, { maxEntities: 2 })), {
      specialTokens: false,
      degradedRetryMs: 1000,
      now: () => now,
    });
    await injector.inject([{ text: '新冠肺炎' }]);
    g.down = true;
    const degraded = await injector.inject([{ text: SENTENCE }]);
    assert.equal(degraded.degraded, true);
    assert.equal(degraded.namesWithoutTriples, 1);
    // 新冠肺炎 was cached and keeps its branch; 呼吸道 was not and gets none.
    assert.deepEqual(
      degraded.trees[0][0].links.map((l) => [l.start, l.injected]),
      [
        [0, 1],
        [7, 0],
      ],
    );
    const calls = g.calls.length;
    now = 500;
    const cachedOnly = await injector.inject([{ text: SENTENCE }]);
    assert.equal(cachedOnly.degraded, true);
    assert.equal(g.calls.length, calls, 'no graph call while holding off');
    // Everything the batch needs is cached: complete knowledge, not degraded.
    assert.equal((await injector.inject([{ text: '新冠肺炎' }])).degraded, false);
    now = 1500;
    g.down = false;
    const back = await injector.inject([{ text: SENTENCE }]);
    assert.equal(back.degraded, false);
    assert.equal(back.roundTrips, 1);
    assert.deepEqual(
      back.trees[0][0].links.map((l) => l.injected),
      [1, 1],
    );
  });

  it('propagates errors that are not about availability', async () => {
    const g = new FlakyGraph();
    await loadSpoFile(V1, g);
    const snapshot = await createSnapshot(g, { maxEntities: 2 });
    g.triplesOf = async () => {
      throw new RangeError('bug');
    };
    const injector = new KnowledgeInjector(tokenizer, staticKnowledge(snapshot));
    await assert.rejects(injector.inject([{ text: SENTENCE }]), /triple lookup failed: bug/);
  });

  it('builds the input without knowledge when knowledge is off (no source needed)', async () => {
    const injector = new KnowledgeInjector(tokenizer, null, { knowledge: false });
    const batch = await injector.inject([{ text: SENTENCE }]);
    assert.equal(batch.trees[0][0].tokenIds.length, 16);
    assert.equal(batch.kgVersion, null);
    assert.throws(() => new KnowledgeInjector(tokenizer, null), /knowledge source is required/);
  });

  it('matches on word boundaries of the tokenizer', async () => {
    const g = new FlakyGraph();
    await g.mergeTriples([{ subject: 'ct', relation: '类别', object: '检查' }]);
    const injector = new KnowledgeInjector(new TestTokenizer({ wordPieces: 2 }), staticKnowledge(await createSnapshot(g, { maxEntities: 2 })), {
      specialTokens: false,
    });
    const batch = await injector.inject([{ text: 'fact' }, { text: '做CT' }]);
    assert.deepEqual(batch.trees[0][0].links, []);
    assert.equal(batch.trees[1][0].links.length, 1);
  });
});
