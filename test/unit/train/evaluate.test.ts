import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { InMemoryKnowledgeGraph, kgVersionOf, loadSpoFile } from '../../../src/knowledge/index.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import { createInjector } from '../../../src/train/evaluate.ts';
import type { KnowledgeSetup } from '../../../src/train/evaluate.ts';

const KNOWLEDGE: Omit<KnowledgeSetup, 'kgFile'> = {
  enabled: true,
  inject: 'relation+object',
  maxEntities: 2,
  maxLength: 64,
  softPositions: true,
  visibilityMatrix: true,
};

test('createInjector: several graph files get the version of their union, as one file holding the union and as kg load leaves it', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-injector-'));
  try {
    const main = path.join(dir, 'main.spo');
    const terms = path.join(dir, 'terms.spo');
    const union = path.join(dir, 'union.spo');
    await writeFile(main, '高血压\t类别\t疾病\n头痛\t类别\t症状\n');
    // One triple in both files: the union holds it once.
    await writeFile(terms, '头痛\t类别\t症状\n糖尿病\t词表\t疾病\n');
    await writeFile(union, '糖尿病\t词表\t疾病\n头痛\t类别\t症状\n高血压\t类别\t疾病\n');
    const tokenizer = await BertTokenizer.load();
    const two = await createInjector(tokenizer, { ...KNOWLEDGE, kgFile: main, extraKgFiles: [terms] });
    const one = await createInjector(tokenizer, { ...KNOWLEDGE, kgFile: union });
    const expected = kgVersionOf([
      { subject: '高血压', relation: '类别', object: '疾病' },
      { subject: '头痛', relation: '类别', object: '症状' },
      { subject: '糖尿病', relation: '词表', object: '疾病' },
    ]);
    assert.equal(two.kgVersion, expected);
    assert.equal(one.kgVersion, expected);
    const graph = new InMemoryKnowledgeGraph();
    await loadSpoFile(main, graph);
    assert.equal((await loadSpoFile(terms, graph)).stamp.version, expected);
    // A single file keeps its own version, different from the union's.
    const alone = await createInjector(tokenizer, { ...KNOWLEDGE, kgFile: main });
    assert.notEqual(alone.kgVersion, expected);
    // And the union injects the same knowledge either way.
    const sentences = [{ text: '高血压伴头痛，糖尿病' }];
    const [a, b] = [await two.injector.inject(sentences), await one.injector.inject(sentences)];
    assert.deepEqual(a, b);
    // 高血压 and 头痛 from the main file, 糖尿病 from the term list: 类别疾病, 类别症状, 词表疾病, 4 tokens each.
    assert.equal(a.trees[0][0].injectedTokens, 12);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
