/**
 * `rmbert annotate` (no servers needed) and `rmbert demo` (the local Kafka and Neo4j) as processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { writeRandomArtifact } from './artifact.ts';
import { tempDir } from './harness.ts';

function rmbert(args: string[], input?: string, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/cli/main.ts'), ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env },
    });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('exit', (code) => resolve({ code, out, err }));
    child.stdin.end(input ?? '');
  });
}

test('rmbert annotate: one JSON line per stdin line, spans on the text, bad lines reported not fatal', async () => {
  const tmp = await tempDir('rmbert-annotate');
  try {
    await writeRandomArtifact(path.join(tmp.dir, 'models/v1'), { seed: 21 });
    // A lone surrogate cannot cross stdin as one (Node writes it as EF BF BD, a valid U+FFFD, which is
    // text); a JSON \u escape carries it into the document.
    const lines = ['患者咳嗽伴发热5天。', '{"id":"j1","text":"诊断为支气管肺炎，行胸部CT检查。"}', '', '{"text":"头痛\\ud800"}'];
    const { code, out, err } = await rmbert(['annotate', '--model-dir', path.join(tmp.dir, 'models'), '--engine', 'onnx'], lines.join('\n'));
    assert.equal(code, 0, err);
    const records = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(records.map((r) => r.id), ['stdin:1', 'j1', 'stdin:4']);
    const texts = ['患者咳嗽伴发热5天。', '诊断为支气管肺炎，行胸部CT检查。'];
    records.slice(0, 2).forEach((r, i) => {
      assert.match(r.modelVersion, /^rmbert-random\+[0-9a-f]{12}$/);
      assert.match(r.kgVersion, /^[0-9a-f]{64}$/);
      for (const e of r.entities) assert.equal(texts[i].slice(e.start, e.end), e.text);
    });
    assert.equal(records[2].error.class, 'InvalidTextError');
    assert.match(err, /1 could not be annotated/);

    const noModel = await rmbert(['annotate', '--model-dir', path.join(tmp.dir, 'nothing-here')], 'x');
    assert.equal(noModel.code, 1);
    assert.match(noModel.err, /no model artifact in .*nothing-here; pass --model-dir/);
  } finally {
    await tmp.remove();
  }
});

test('rmbert demo: the samples through the stage on the local servers, entities printed, topics cleaned up', { timeout: 300_000 }, async () => {
  const tmp = await tempDir('rmbert-demo');
  try {
    // A model directory without an artifact makes the demo use its random stand-in (and say so).
    const { code, out, err } = await rmbert(['demo', '--json', '--model-dir', tmp.dir]);
    assert.equal(code, 0, err);
    assert.match(err, /RANDOM-WEIGHT model/);
    assert.match(err, /demo: 12 annotated, 0 dead-lettered, 12 produced/);
    const records = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(records.length, 12);
    assert.deepEqual(records.map((r) => r.documentId), Array.from({ length: 12 }, (_, i) => `emr-sample-${String(i + 1).padStart(3, '0')}`));
    assert.ok(records.every((r) => r.kgVersion.length === 64 && !r.kgDegraded));
  } finally {
    await tmp.remove();
  }
});
