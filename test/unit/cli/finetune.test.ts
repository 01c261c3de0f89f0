import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../helpers/paths.ts';

/** Runs `rmbert ARGS` as a child process; once `interruptAfter(stderr)` is true, SIGINT follows after `delayMs`. */
function rmbert(args: string[], interruptAfter?: (stderr: string) => boolean, delayMs = 0): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'src/cli/main.ts'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let sent = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (!sent && interruptAfter?.(stderr)) {
        sent = true;
        setTimeout(() => child.kill('SIGINT'), delayMs);
      }
    });
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

const common = ['--data', 'medical', '--random-init', '--hidden', '16', '--layers', '1', '--heads', '2', '--train-limit', '2000', '--dev-limit', '12'];
const method = ['--epochs', '1', '--lr', '1e-3', '--gamma', '500', '--batch-size', '4', '--backend', 'wasm', '--no-progress'];

test('rmbert finetune: Ctrl-C writes a checkpoint and exits 130; --resume finishes the run; rmbert eval scores the artifact', async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-ft-cli-'));
  try {
    const out = path.join(dir, 'model');
    const runDir = path.join(dir, 'run');
    const args = [...common, ...method, '--out', out, '--run-dir', runDir];
    // Training starts right after the data summary line; 3 s later it is inside the epoch, which is long
    // enough (500 steps) that a fast, quiet machine cannot finish it first.
    const stopped = await rmbert(['finetune', ...args], (stderr) => stderr.includes('dev 12'), 3000);
    assert.equal(stopped.code, 130, stopped.stderr);
    assert.match(stopped.stderr, /interrupted: checkpoint written to .*checkpoint \(resume with --resume\)/);
    const state = JSON.parse(await readFile(path.join(runDir, 'checkpoint', 'state.json'), 'utf8'));
    assert.equal(state.epoch, 0);
    assert.ok(state.batchIndex > 0 && state.batchIndex < 500, `stopped inside the epoch (batch ${state.batchIndex} of ~500)`);
    assert.equal(state.step, state.batchIndex);
    assert.equal(existsSync(out), false, 'no artifact from an interrupted run');

    const resumed = await rmbert(['finetune', ...args, '--resume', '--json', path.join(dir, 'result.json')]);
    assert.equal(resumed.code, 0, resumed.stderr);
    assert.match(resumed.stderr, new RegExp(`resumed from .* at epoch 1, batch ${state.batchIndex}, step ${state.step}`));
    assert.match(resumed.stdout, /strict \(span \+ type\)\s+P\s+[\d.]+\s+R\s+[\d.]+\s+F1/);
    const result = JSON.parse(await readFile(path.join(dir, 'result.json'), 'utf8'));
    assert.equal(result.status, 'completed');
    assert.ok(result.steps > state.step);

    const evalJson = path.join(dir, 'eval.json');
    const scored = await rmbert(['eval', '--model', out, '--data', 'medical', '--split', 'dev', '--backend', 'wasm', '--json', evalJson]);
    assert.equal(scored.code, 0, scored.stderr);
    assert.match(scored.stdout, /K-BERT \(span only\)/);
    assert.match(scored.stdout, /BodyPart 身体部位/);
    const evaluation = JSON.parse(await readFile(evalJson, 'utf8'));
    assert.equal(evaluation.evaluation.sentences, 939);
    assert.equal(evaluation.knowledge.enabled, true);
    assert.equal(evaluation.evaluation.strict.gold, 3410, 'dev gold entities, orphan I- repaired');
    assert.equal(evaluation.evaluation.kbert.gold, 3409, "K-BERT's scorer ignores the orphan I-");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('rmbert finetune and eval refuse bad options with what to fix', async () => {
  const bad = await rmbert(['finetune', '--data', 'genes', '--ablation', 'no-brain', '--backbone', '/nonexistent']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /--data must be medical or msra/);
  assert.match(bad.stderr, /--ablation must be one of none, no-mask, no-pos, no-kg, no-recall/);
  assert.match(bad.stderr, /no backbone artifact at \/nonexistent/);
  const badEval = await rmbert(['eval', '--model', '/nonexistent', '--data', 'medical']);
  assert.equal(badEval.code, 1);
  assert.match(badEval.stderr, /no model artifact at \/nonexistent/);
  const help = await rmbert(['finetune', '--help']);
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Ctrl-C writes a checkpoint/);
});
