/**
 * `rmbert annotate` as someone types at it: each line is answered before the next one comes, and it
 * works from any directory (the default model and graph are the package's).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { withIdleMarks } from '../../../src/cli/commands/annotate.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';

test('withIdleMarks marks a pause in the input, and only a pause', async () => {
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  async function* source() {
    yield 'a';
    yield 'b';
    await sleep(150);
    yield 'c';
  }
  const seen: unknown[] = [];
  for await (const item of withIdleMarks(source(), 50)) seen.push(typeof item === 'symbol' ? 'IDLE' : item);
  assert.deepEqual(seen, ['a', 'b', 'IDLE', 'c']);
});

test('annotate answers each stdin line while the input stays open, from another directory', { timeout: 180_000 }, async () => {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/rmbert.js'), 'annotate', '--engine', 'onnx'], {
    cwd: os.tmpdir(),
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const lines = () => stdout.split('\n').filter(Boolean);
  const waitForLines = async (n: number, ms: number) => {
    const until = Date.now() + ms;
    while (lines().length < n && Date.now() < until && child.exitCode === null) await new Promise((r) => setTimeout(r, 50));
    assert.equal(lines().length, n, `expected ${n} output line(s); stderr:\n${stderr}`);
  };
  try {
    child.stdin.write('患者右下腹痛3天。\n');
    // The model loads first (seconds); the answer must not wait for 31 more lines or the end of input.
    await waitForLines(1, 150_000);
    child.stdin.write('查体：腹软，右下腹压痛。\n');
    await waitForLines(2, 20_000);
    child.stdin.end();
    assert.equal(await exited, 0, stderr);
    const [first, second] = lines().map((l) => JSON.parse(l) as { id: string; entities: { text: string }[]; kgVersion: string });
    assert.equal(first.id, 'stdin:1');
    assert.equal(second.id, 'stdin:2');
    // The package's graph was found from the temporary directory.
    assert.match(first.kgVersion, /^[0-9a-f]{64}$/);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});
