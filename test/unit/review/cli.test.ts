/** `rmbert review` as a command: --help tells its settings, a bad configuration exits 2 listing every problem. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../../helpers/paths.ts';

const BIN = path.join(REPO_ROOT, 'bin/rmbert.js');

function rmbert(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [BIN, ...args], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...env } }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

test('--help lists every setting of the page with its variable and default', async () => {
  const r = await rmbert(['review', '--help']);
  assert.equal(r.code, 0);
  for (const s of ['RMBERT_REVIEW_HOST', 'RMBERT_REVIEW_TOKENS_FILE', 'RMBERT_REVIEW_PROXY_USER_HEADER', 'RMBERT_REVIEW_SHOW_PATIENT_REF', 'RMBERT_REVIEW_TRAINER_METRICS_URL', '(default 127.0.0.1)']) assert.ok(r.stdout.includes(s), s);
});

test('a bad configuration exits 2 with every problem, before any connection', async () => {
  const r = await rmbert(['review', '--port', '99999'], { RMBERT_REVIEW_SHOW_PATIENT_REF: 'perhaps' });
  assert.equal(r.code, 2);
  assert.match(r.stderr, /review.port .*99999 is outside/);
  assert.match(r.stderr, /showPatientRef .*not a boolean/);
  assert.match(r.stderr, /tokensFile: required unless/);
});
