/** The knowledge layer with the product's tokenizer (bert-base-chinese vocabulary) and the shipped graph. */
import assert from 'node:assert/strict';
import path from 'node:path';
import { before, describe, it } from 'node:test';
import { isVisible } from '../../../src/domain/index.ts';
import {
  ConceptMatcher,
  createSnapshot,
  InMemoryKnowledgeGraph,
  KnowledgeInjector,
  loadSpoFile,
  SentenceTreeBuilder,
  staticKnowledge,
} from '../../../src/knowledge/index.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

let tokenizer: BertTokenizer;
before(async () => {
  tokenizer = await BertTokenizer.load();
});

describe('knowledge with the bert-base-chinese tokenizer', () => {
  it('builds the paper example with vocabulary ids: [CLS] 新 冠 肺 炎 类 别 疾 病 ... [SEP]', () => {
    const builder = new SentenceTreeBuilder(tokenizer);
    const [tree] = builder.build({
      text: '新冠肺炎可通过呼吸道飞沫传播',
      matches: [
        { start: 0, end: 4, triples: [{ subject: '新冠肺炎', relation: '类别', object: '疾病' }] },
        { start: 7, end: 10, triples: [{ subject: '呼吸道', relation: '类别', object: '部位' }] },
      ],
    });
    const vocabIds = (s: string): number[] => [...s].map((c) => tokenizer.tokenize(c)[0].id);
    assert.deepEqual([...tree.tokenIds], [101, ...vocabIds('新冠肺炎类别疾病可通过呼吸道类别部位飞沫传播'), 102]);
    // Spot-check ids against the vocabulary file: 的 = 4638 elsewhere; here 病 and 类.
    assert.equal(tokenizer.tokenize('病')[0].id, 4567);
    assert.deepEqual([...tree.softPositions], [0, 1, 2, 3, 4, 5, 6, 7, 8, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 11, 12, 13, 14, 15]);
    assert.equal(isVisible(tree, 9, 5), false);
    assert.equal(isVisible(tree, 1, 5), true);
  });

  it('finds Latin-bearing Medical names only as whole words', () => {
    const m = ConceptMatcher.build(['胸部及腹部CT', 'ct', 'PUVA雀斑样痣', 'va雀斑样痣']);
    const match = (text: string): string[] => m.match(text, { tokens: tokenizer.tokenize(text) }).map((x) => text.slice(x.start, x.end));
    assert.deepEqual(match('行胸部及腹部CT检查'), ['胸部及腹部CT']);
    assert.deepEqual(match('行胸部及腹部ＣＴ检查'), ['胸部及腹部ＣＴ']);
    // "fact" = "fa" "##ct", "ctscan" = "ct" "##sc" "##an": no "ct" in either.
    assert.deepEqual(match('fact ctscan'), []);
    assert.deepEqual(match('复查CT'), ['CT']);
    // "puva" = "pu" "##va": the shorter name starting at "##va" is inside the word.
    assert.deepEqual(match('PUVA雀斑样痣'), ['PUVA雀斑样痣']);
    assert.deepEqual(match('XPUVA雀斑样痣'), []);
  });

  it('injects the shipped Medical graph into a medical test sentence', async () => {
    const graph = new InMemoryKnowledgeGraph();
    await loadSpoFile(path.join(REPO_ROOT, 'data/kg/Medical.spo'), graph);
    const injector = new KnowledgeInjector(tokenizer, staticKnowledge(await createSnapshot(graph, { maxEntities: 2 })), { inject: 'object' });
    const text = '主因咳嗽伴发热5天于2016年11月30日13:09以支气管肺炎收入院。';
    const batch = await injector.inject([{ text, start: 10 }]);
    const [tree] = batch.trees[0];
    assert.equal(tree.links.length, 1);
    const link = tree.links[0];
    assert.deepEqual([link.start, link.end, link.injected], [37, 42, 1]);
    assert.deepEqual(link.triples, [{ subject: '支气管肺炎', relation: '类别', object: '疾病' }]);
    // The branch (疾 病) follows 炎 and continues its soft position.
    const last = link.lastToken;
    assert.deepEqual([...tree.tokenIds.subarray(last + 1, last + 3)], [tokenizer.tokenize('疾')[0].id, tokenizer.tokenize('病')[0].id]);
    assert.deepEqual([...tree.softPositions.subarray(last, last + 4)], [tree.softPositions[last], tree.softPositions[last] + 1, tree.softPositions[last] + 2, tree.softPositions[last] + 1]);
    // Every original token maps back to the document text.
    for (let i = 0; i < tree.tokenIds.length; i++) {
      if (tree.charStart[i] < 0) continue;
      const piece = text.slice(tree.charStart[i] - 10, tree.charEnd[i] - 10);
      assert.ok(piece.length > 0);
    }
  });
});
