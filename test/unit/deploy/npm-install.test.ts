/**
 * Installing stays offline for onnxruntime-node (its postinstall would download CUDA providers the
 * stage does not use) through the environment variable its install script reads, not through an
 * .npmrc key that npm warns about on every npm and npx command.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../../helpers/paths.ts';

const read = (file: string) => readFileSync(path.join(REPO_ROOT, file), 'utf8');

test('npm in this project prints no "Unknown project config" warning', async () => {
  const stderr = await new Promise<string>((resolve) => {
    execFile('npm', ['config', 'get', 'registry'], { cwd: REPO_ROOT }, (_error, _stdout, err) => resolve(err));
  });
  assert.doesNotMatch(stderr, /Unknown (project|user|env|cli) config/);
  if (existsSync(path.join(REPO_ROOT, '.npmrc'))) assert.doesNotMatch(read('.npmrc'), /onnxruntime/);
});

test('every documented or scripted npm ci skips onnxruntime-node\'s download', () => {
  // The variable onnxruntime-node's script/install.js reads (as well as its own command-line flag).
  const installer = read('node_modules/onnxruntime-node/script/install-utils.js');
  assert.match(installer, /process\.env\.ONNXRUNTIME_NODE_INSTALL\b/);
  const places = ['README.md', '.ci/run', 'scripts/test.sh'];
  let seen = 0;
  for (const file of places) {
    for (const line of read(file).split('\n')) {
      // npm ci as a command (at the start of a line or after && or ;, with any variable assignments before it).
      if (!/(^|&&|;)\s*([A-Z_]+=\S+\s+)*npm ci\b/.test(line)) continue;
      seen++;
      assert.match(line, /ONNXRUNTIME_NODE_INSTALL=(\$\{ONNXRUNTIME_NODE_INSTALL:-)?skip/, `${file}: ${line.trim()}`);
    }
  }
  assert.ok(seen >= 3, `found ${seen} npm ci commands`);
});
