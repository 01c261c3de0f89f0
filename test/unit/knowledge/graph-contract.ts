/**
 * The behaviour every KnowledgeGraph adapter must have. Run against the in-memory adapter in
 * test/unit/knowledge and against real Neo4j in test/integration/knowledge.
 */
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import type { Triple } from '../../../src/domain/index.ts';
import type { KgStamp, KnowledgeGraph } from '../../../src/knowledge/index.ts';
import { uniqueName } from '../../helpers/names.ts';

export type GraphFactory = (graphName: string) => Promise<KnowledgeGraph>;

const t = (subject: string, relation: string, object: string): Triple => ({ subject, relation, object });

/** Names that would change a query if anything spliced them into Cypher text. */
export const HOSTILE_NAMES = [
  `x'}) DETACH DELETE n //`,
  'a"b',
  '`Concept`',
  '{name: "y"}',
  '$graph',
  'back\\slash\\',
  "'; MATCH (n) DETACH DELETE n; //",
  '}]->(o) DELETE o //',
  '${name}',
];

export function knowledgeGraphContract(adapter: string, factory: GraphFactory): void {
  describe(`KnowledgeGraph contract: ${adapter}`, () => {
    const opened: KnowledgeGraph[] = [];
    const fresh = async (): Promise<KnowledgeGraph> => {
      const graph = await factory(uniqueName('kgtest'));
      opened.push(graph);
      await graph.init();
      return graph;
    };
    after(async () => {
      for (const graph of opened) {
        await graph.clear();
        await graph.close();
      }
    });

    it('starts empty', async () => {
      const g = await fresh();
      assert.deepEqual(await g.stats(), { concepts: 0, triples: 0 });
      assert.deepEqual(await g.subjects(), []);
      assert.equal(await g.stamp(), null);
      assert.deepEqual(await g.allTriples(), []);
      assert.deepEqual([...(await g.triplesOf(['新冠肺炎'], 2))], [['新冠肺炎', []]]);
    });

    it('merges idempotently and counts concepts once per name', async () => {
      const g = await fresh();
      const batch = [t('新冠肺炎', '类别', '疾病'), t('呼吸道', '类别', '部位'), t('肺炎', '类别', '疾病'), t('新冠肺炎', '类别', '疾病')];
      await g.mergeTriples(batch);
      await g.mergeTriples(batch);
      await g.mergeTriples([]);
      // 新冠肺炎, 呼吸道, 肺炎, 疾病, 部位
      assert.deepEqual(await g.stats(), { concepts: 5, triples: 3 });
      assert.deepEqual(await g.subjects(), ['呼吸道', '新冠肺炎', '肺炎'].sort());
    });

    it('keeps one triple per (subject, relation, object) but distinct relations apart', async () => {
      const g = await fresh();
      await g.mergeTriples([t('a', 'r1', 'b'), t('a', 'r2', 'b'), t('b', 'r1', 'a'), t('c', 'r', 'c')]);
      assert.deepEqual(await g.stats(), { concepts: 3, triples: 4 });
      assert.deepEqual(await g.allTriples(), [t('a', 'r1', 'b'), t('a', 'r2', 'b'), t('b', 'r1', 'a'), t('c', 'r', 'c')]);
    });

    it('returns at most maxPerName triples per name in (relation, object) code-unit order, one entry per name', async () => {
      const g = await fresh();
      // U+20000 is a surrogate pair (D840 DC00): before U+FF01 in code units, after it in code points.
      await g.mergeTriples([
        t('右踝', '类别', '部位'),
        t('右踝', '类别', '\u{20000}'),
        t('右踝', '类别', '\uff01'),
        t('右踝', '别名', '踝'),
        t('右踝内侧', '类别', '部位'),
        t('疼痛', '类别', '症状'),
      ]);
      const result = await g.triplesOf(['右踝', '疼痛', '不存在', '右踝', '右踝内侧'], 3);
      assert.deepEqual([...result.keys()].sort(), ['不存在', '右踝', '右踝内侧', '疼痛'].sort());
      // Code units: 部位 (U+90E8) < 𠀀 (D840 DC00) < ！ (U+FF01); code points would put ！ before 𠀀.
      assert.deepEqual(result.get('右踝'), [t('右踝', '别名', '踝'), t('右踝', '类别', '部位'), t('右踝', '类别', '\u{20000}')]);
      assert.equal((await g.triplesOf(['右踝'], 10)).get('右踝')?.[3].object, '\uff01');
      assert.deepEqual(result.get('疼痛'), [t('疼痛', '类别', '症状')]);
      assert.deepEqual(result.get('不存在'), []);
      assert.deepEqual((await g.triplesOf(['右踝'], 1)).get('右踝'), [t('右踝', '别名', '踝')]);
      assert.deepEqual((await g.triplesOf(['右踝'], 0)).get('右踝'), []);
      assert.deepEqual((await g.triplesOf([], 2)).size, 0);
      // A name that is only ever an object has no triples of its own.
      assert.deepEqual((await g.triplesOf(['部位'], 2)).get('部位'), []);
    });

    it('stores names exactly, with no normalisation (case, width, combining marks, astral characters)', async () => {
      const g = await fresh();
      const names = ['CT', 'ct', 'ＣＴ', 'e\u0301', '\u00e9', '𠀀病', 'a b'];
      await g.mergeTriples(names.map((n) => t(n, '类别', '检查')));
      assert.deepEqual(await g.stats(), { concepts: names.length + 1, triples: names.length });
      assert.deepEqual(await g.subjects(), [...names].sort());
      const found = await g.triplesOf(names, 2);
      for (const n of names) assert.deepEqual(found.get(n), [t(n, '类别', '检查')], n);
    });

    it('treats quotes, backticks, braces and $ in names as data, never as query text', async () => {
      const g = await fresh();
      await g.mergeTriples([t('keep', 'r', 'me')]);
      const hostile = HOSTILE_NAMES.map((n, i) => t(n, `rel ${n}`, `${n} #${i}`));
      await g.mergeTriples(hostile);
      assert.deepEqual(await g.stats(), { concepts: 1 + 1 + 2 * HOSTILE_NAMES.length, triples: 1 + HOSTILE_NAMES.length });
      const found = await g.triplesOf([...HOSTILE_NAMES, 'keep'], 5);
      HOSTILE_NAMES.forEach((n, i) => assert.deepEqual(found.get(n), [hostile[i]], n));
      assert.deepEqual(found.get('keep'), [t('keep', 'r', 'me')]);
      await g.setStamp({ version: HOSTILE_NAMES[0], triples: 1, concepts: 2, loadedAt: '$now', source: HOSTILE_NAMES[3] });
      assert.equal((await g.stamp())?.source, HOSTILE_NAMES[3]);
    });

    it('stores, replaces and removes the version stamp', async () => {
      const g = await fresh();
      const stamp: KgStamp = { version: 'a'.repeat(64), triples: 13864, concepts: 13558, loadedAt: '2025-01-01T00:00:00.000Z', source: 'Medical.spo' };
      await g.setStamp(stamp);
      assert.deepEqual(await g.stamp(), stamp);
      const next = { ...stamp, version: 'b'.repeat(64), triples: 1 };
      await g.setStamp(next);
      assert.deepEqual(await g.stamp(), next);
      await g.setStamp(null);
      assert.equal(await g.stamp(), null);
    });

    it('keeps graphs apart: clearing one leaves another untouched', async () => {
      const a = await fresh();
      const b = await fresh();
      await a.mergeTriples([t('肺炎', '类别', '疾病')]);
      await b.mergeTriples([t('肺炎', '类别', '症状'), t('咳嗽', '类别', '症状')]);
      await a.setStamp({ version: 'a', triples: 1, concepts: 2, loadedAt: 'x', source: 'a' });
      assert.deepEqual((await a.triplesOf(['肺炎', '咳嗽'], 2)).get('肺炎'), [t('肺炎', '类别', '疾病')]);
      assert.deepEqual((await a.triplesOf(['咳嗽'], 2)).get('咳嗽'), []);
      await a.clear();
      assert.deepEqual(await a.stats(), { concepts: 0, triples: 0 });
      assert.equal(await a.stamp(), null);
      assert.deepEqual(await b.stats(), { concepts: 3, triples: 2 });
    });

    it('takes large batches', async () => {
      const g = await fresh();
      const many: Triple[] = [];
      for (let i = 0; i < 3000; i++) many.push(t(`概念${i}`, '类别', i % 2 ? '疾病' : '症状'));
      await g.mergeTriples(many);
      assert.deepEqual(await g.stats(), { concepts: 3002, triples: 3000 });
      const subjects = await g.subjects();
      assert.equal(subjects.length, 3000);
      assert.deepEqual(subjects.slice(0, 3), ['概念0', '概念1', '概念10']);
    });
  });
}
