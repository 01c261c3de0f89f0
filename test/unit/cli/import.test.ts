import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../../src/cli/commands/import.ts';
import { loadArtifact } from '../../../src/model/artifact.ts';
import { readSafetensors } from '../../../src/model/safetensors.ts';
import { BertTokenizer } from '../../../src/model/tokenizer.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

const CHECKPOINT = path.join(REPO_ROOT, 'test', 'fixtures', 'parity', 'weights.safetensors');

/** Captures console output of one command run. */
async function capture(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  const out: string[] = [];
  const err: string[] = [];
  const log = console.log;
  const error = console.error;
  console.log = (...a: unknown[]) => void out.push(a.join(' '));
  console.error = (...a: unknown[]) => void err.push(a.join(' '));
  try {
    const code = await run(argv);
    return { code, out: out.join('\n'), err: err.join('\n') };
  } finally {
    console.log = log;
    console.error = error;
  }
}

test('rmbert import turns the parity checkpoint into an artifact that loads with the same weights', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-import-cli-'));
  try {
    // The fixture model has a 64-token vocabulary.
    const vocab = path.join(dir, 'vocab.txt');
    await writeFile(vocab, ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', ...Array.from({ length: 59 }, (_, i) => `t${i}`)].join('\n') + '\n');
    const out = path.join(dir, 'artifact');

    // Errors the user can fix are ModelErrors (the CLI prints their message, exit status 1).
    await assert.rejects(capture([CHECKPOINT, '--out', out, '--vocab', vocab, '--no-progress']), /3-label classifier: pass its labels with --labels/);
    await assert.rejects(
      capture([CHECKPOINT, '--out', out, '--labels', 'O,B-X,I-X', '--no-progress']),
      /64 token embeddings but the vocabulary .* has 21128 tokens/,
    );
    await assert.rejects(capture([CHECKPOINT, '--out', out, '--vocab', vocab, '--labels', 'O,B-X', '--no-progress']), /lists 2 labels/);

    const ok = await capture([CHECKPOINT, '--out', out, '--vocab', vocab, '--labels', 'O,B-X,I-X', '--name', 'parity-model', '--no-progress']);
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /config from config\.json\): vocab 64, hidden 32, 2 layers, 4 heads/);
    assert.match(ok.out, /not imported: bert\.pooler\.dense\.weight/);
    const tokenizer = BertTokenizer.loadSync(vocab);
    const artifact = await loadArtifact(out, { vocabSha256: tokenizer.vocabSha256 });
    assert.equal(artifact.version.name, 'parity-model');
    assert.deepEqual(artifact.config.labels, ['O', 'B-X', 'I-X']);
    assert.equal(artifact.config.knowledge.enabled, false);
    // A checkpoint from elsewhere keeps Hugging Face's tokenization unless told otherwise.
    assert.deepEqual(artifact.config.tokenizer, { foldFullWidth: false });
    assert.match(ok.out, /tokenizer: full-width forms kept/);
    const folded = await capture([CHECKPOINT, '--out', out, '--vocab', vocab, '--labels', 'O,B-X,I-X', '--fold-full-width', '--overwrite', '--no-progress']);
    assert.equal(folded.code, 0, folded.err);
    assert.deepEqual((await loadArtifact(out, { vocabSha256: tokenizer.vocabSha256 })).config.tokenizer, { foldFullWidth: true });
    const source = readSafetensors(await readFile(CHECKPOINT)).tensors;
    assert.deepEqual(artifact.weights.get('classifier.weight')!.data, source.get('classifier.weight')!.data);
    assert.deepEqual(
      artifact.weights.get('bert.encoder.layer.1.output.LayerNorm.bias')!.data,
      source.get('bert.encoder.layer.1.output.LayerNorm.bias')!.data,
    );

    assert.equal((await capture(['--help'])).code, 0);
    assert.equal((await capture([CHECKPOINT])).code, 2);
    assert.equal((await capture([CHECKPOINT, '--out', out, '--dtype', 'f8'])).code, 2);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
