import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../../src/cli/commands/terms.ts';
import { ConfigError } from '../../../src/errors/index.ts';
import { loadCorpus } from '../../../src/train/datasets.ts';
import { collectTerms } from '../../../src/train/terms.ts';
import { SHARED_DATA } from '../../helpers/paths.ts';

test('rmbert terms: every training entity surface once, as 词表 triples; --drop leaves a seeded share out', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-terms-'));
  try {
    const file = path.join(dir, 'terms.spo');
    assert.equal(await run(['--corpus', 'medical', '--out', file, '--data-dir', SHARED_DATA]), 0);
    const lines = (await readFile(file, 'utf8')).trimEnd().split('\n');
    const surfaces = lines.map((l) => l.split('\t'));
    assert.ok(surfaces.every((f) => f.length === 3 && f[1] === '词表' && ['部位', '症状', '疾病', '检查', '治疗'].includes(f[2])));
    assert.equal(new Set(surfaces.map((f) => f[0])).size, lines.length);
    // Only the training split: the surfaces that only dev or test hold are absent.
    const corpus = loadCorpus('medical', SHARED_DATA);
    const trainTerms = collectTerms(corpus.train.sentences, corpus.types);
    const heldOnly = [...collectTerms([...corpus.dev.sentences, ...corpus.test.sentences], corpus.types).keys()].filter((t) => !trainTerms.has(t));
    const listed = new Set(surfaces.map((f) => f[0]));
    assert.equal(listed.size, trainTerms.size);
    assert.ok(heldOnly.length > 50, `held-out-only surfaces ${heldOnly.length}`);
    assert.deepEqual(heldOnly.filter((t) => listed.has(t)), []);
    const dropped = path.join(dir, 'dropped.spo');
    assert.equal(await run(['--corpus', 'medical', '--out', dropped, '--drop', '0.5', '--seed', '3', '--data-dir', SHARED_DATA]), 0);
    const kept = (await readFile(dropped, 'utf8')).trimEnd().split('\n').length;
    assert.ok(Math.abs(kept / lines.length - 0.5) < 0.05, `kept ${kept} of ${lines.length}`);
    await assert.rejects(run(['--corpus', 'medical']), ConfigError);
    await assert.rejects(run(['--corpus', 'medical', '--out', file, '--drop', '1']), ConfigError);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
