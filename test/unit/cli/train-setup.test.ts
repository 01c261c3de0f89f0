/**
 * The trainer beside the stage: with the stage's default model directory (an artifact itself) the
 * trainer refuses with the fix, and the fix (a directory of versions shared by both) works for both.
 */
import assert from 'node:assert/strict';
import { cpSync, mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { loadTrainerSetup } from '../../../src/cli/commands/train.ts';
import { modelDirectoryCatalog } from '../../../src/cli/stage-wiring.ts';
import { buildConfig } from '../../../src/config/index.ts';
import { ConfigError } from '../../../src/errors/index.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

test('the stage\'s default model directory is refused by the trainer, and the fix it names serves both', async () => {
  const shipped = path.join(REPO_ROOT, 'models/medical');
  assert.equal(buildConfig({ env: {} }).model.dir, shipped);
  assert.throws(
    () => loadTrainerSetup({}),
    (e: unknown) => e instanceof ConfigError && e.problems.some((p) => p.includes(`cp -r ${shipped} DIR/`) && p.includes('RMBERT_MODEL_DIR=DIR')),
  );

  const dir = mkdtempSync(path.join(os.tmpdir(), 'rmbert-versions-'));
  try {
    cpSync(shipped, path.join(dir, 'medical'), { recursive: true });
    const { config } = loadTrainerSetup({ 'model-dir': dir });
    assert.equal(config.model.dir, dir);
    // The stage, given the same directory, serves the copied model (the newest version there).
    const served = await modelDirectoryCatalog(dir).latest();
    assert.equal(served?.location, path.join(dir, 'medical'));
    assert.equal(served?.sha256, (await modelDirectoryCatalog(shipped).latest())?.sha256);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
