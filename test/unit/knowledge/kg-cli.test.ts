/** `rmbert kg` behaviour that needs no server: help, usage errors, unreachable Neo4j, missing file. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { REPO_ROOT } from '../../helpers/paths.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'rmbert-kgcli-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function rmbert(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, ['bin/rmbert.js', 'kg', ...args], { cwd: REPO_ROOT }, (error, stdout, stderr) => {
      resolve({ code: error ? ((error as { code?: number }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('rmbert kg (no server)', () => {
  it('--help describes load and info with the flags and their defaults', async () => {
    const { code, stdout } = await rmbert('--help');
    assert.equal(code, 0);
    for (const text of ['rmbert kg load FILE.spo', 'rmbert kg info', '--neo4j-uri URI', 'bolt://127.0.0.1:17687', '--neo4j-user', '--neo4j-password', 'rmbert-local', '--batch-size N', 'default 1000', '--replace', '--graph NAME']) {
      assert.ok(stdout.includes(text), text);
    }
  });

  it('rejects bad usage with exit status 2 and says what to fix', async () => {
    const cases: [string[], RegExp][] = [
      [[], /missing action/],
      [['lod'], /unknown action "lod"/],
      [['load'], /exactly one FILE\.spo/],
      [['load', 'a.spo', '--batch-size', '0'], /--batch-size must be a positive integer/],
      [['load', 'a.spo', '--neo4j-uri', 'foo://x'], /neo4j\.uri: "foo:\/\/x" is not a bolt:\/\/ or neo4j:\/\/ URI/],
      [['load', 'a.spo', '--nope'], /Unknown option '--nope'/],
    ];
    for (const [args, message] of cases) {
      const { code, stderr } = await rmbert(...args);
      assert.equal(code, 2, args.join(' '));
      assert.match(stderr, message, args.join(' '));
    }
  });

  it('names a missing file, and an unreachable server with how to start it', async () => {
    const missing = await rmbert('load', path.join(dir, 'nope.spo'), '--neo4j-uri', 'bolt://127.0.0.1:9');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read .*nope\.spo/);
    const file = path.join(dir, 'ok.spo');
    writeFileSync(file, '肺炎\t类别\t疾病\n');
    const down = await rmbert('load', file, '--neo4j-uri', 'bolt://127.0.0.1:9', '--no-progress');
    assert.equal(down.code, 1);
    assert.match(down.stderr, /cannot reach Neo4j at bolt:\/\/127\.0\.0\.1:9/);
    assert.match(down.stderr, /bash scripts\/infra\.sh up/);
  });
});
