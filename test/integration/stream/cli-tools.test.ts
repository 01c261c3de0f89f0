/**
 * `rmbert annotate` (no servers needed) and `rmbert demo` (the local Kafka and Neo4j) as processes.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { writeRandomArtifact } from './artifact.ts';
import { tempDir } from './harness.ts';

function rmbert(args: string[], input?: string | Buffer, env: Record<string, string> = {}): Promise<{ code: number | null; out: string; err: string }> {
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

test('rmbert annotate: input that is not valid UTF-8 is answered with an InvalidTextError line, never annotated as U+FFFD text', async () => {
  const tmp = await tempDir('rmbert-annotate-utf8');
  try {
    const models = path.join(tmp.dir, 'models');
    await writeRandomArtifact(path.join(models, 'v1'), { seed: 22 });
    const bad = Buffer.concat([Buffer.from('头'), Buffer.from([0xe7, 0x97]), Buffer.from('痛三天。')]);
    // A literal U+FFFD is valid text and is annotated; the truncated sequence E7 97 is not.
    const input = Buffer.concat([Buffer.from('患者咳嗽。\r\n'), bad, Buffer.from('\n含有\ufffd的文本。\n')]);
    const stdin = await rmbert(['annotate', '--model-dir', models, '--engine', 'onnx'], input);
    assert.equal(stdin.code, 0, stdin.err);
    const records = stdin.out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(records.map((r) => [r.id, r.error?.class ?? null]), [
      ['stdin:1', null],
      ['stdin:2', 'InvalidTextError'],
      ['stdin:3', null],
    ]);
    assert.equal(records[1].error.message, 'stdin line 2 is not valid UTF-8 (invalid byte at byte offset 3)');
    assert.match(stdin.err, /3 documents, 1 could not be annotated/);

    const file = path.join(tmp.dir, 'notes.txt');
    await writeFile(file, Buffer.concat([Buffer.from('患者咳嗽。\n'), bad, Buffer.from('\n')]));
    const perLine = await rmbert(['annotate', '--model-dir', models, '--engine', 'onnx', '--per-line', file]);
    assert.equal(perLine.code, 0, perLine.err);
    const lines = perLine.out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines.map((r) => [r.id, r.error?.class ?? null]), [[`${file}:1`, null], [`${file}:2`, 'InvalidTextError']]);
    const whole = await rmbert(['annotate', '--model-dir', models, '--engine', 'onnx', file]);
    assert.equal(JSON.parse(whole.out.trim()).error.message, `file ${file} is not valid UTF-8 (invalid byte at byte offset 19)`);
  } finally {
    await tmp.remove();
  }
});

const MEDICAL_MODEL = path.join(REPO_ROOT, 'models/medical');
test('rmbert annotate: each entity carries its assertion (null with --no-assertion)', { skip: existsSync(MEDICAL_MODEL) ? false : 'no trained model in models/medical' }, async () => {
  const on = await rmbert(['annotate', '--model-dir', MEDICAL_MODEL], '否认高血压、糖尿病病史。\n');
  assert.equal(on.code, 0, on.err);
  const record = JSON.parse(on.out.trim());
  assert.deepEqual(record.entities.map((e: { text: string; assertion: { polarity: string; temporality: string } }) => [e.text, e.assertion.polarity, e.assertion.temporality]), [
    ['高血压', 'absent', 'historical'],
    ['糖尿病', 'absent', 'historical'],
  ]);
  assert.deepEqual(record.entities[0].assertion.triggers[0], { start: 0, end: 2, text: '否认', property: 'negation' });
  const off = await rmbert(['annotate', '--model-dir', MEDICAL_MODEL, '--no-assertion'], '否认高血压、糖尿病病史。\n');
  assert.equal(off.code, 0, off.err);
  assert.deepEqual(JSON.parse(off.out.trim()).entities.map((e: { assertion: unknown }) => e.assertion), [null, null]);
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
