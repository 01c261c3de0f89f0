/** `rmbert kg` behaviour that needs no server: help, usage errors, unreachable Neo4j, missing file, merge. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
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
    for (const text of ['rmbert kg load FILE.spo', 'rmbert kg info', 'rmbert kg merge', '--out FILE', '--neo4j-uri URI', 'bolt://127.0.0.1:17687', '--neo4j-user', '--neo4j-password', 'rmbert-local', '--batch-size N', 'default 1000', '--replace', '--graph NAME']) {
      assert.ok(stdout.includes(text), text);
    }
  });

  it('rejects bad usage with exit status 2 and says what to fix', async () => {
    const cases: [string[], RegExp][] = [
      [[], /missing action/],
      [['lod'], /unknown action "lod"/],
      [['load'], /one or more FILE\.spo/],
      [['merge', 'a.spo'], /kg merge needs --out/],
      [['merge', '--out', 'x.spo'], /kg merge takes one or more FILE\.spo/],
      [['merge', 'a.spo', '--out', 'a.spo'], /is also an input/],
      [['load', 'a.spo', '--out', 'x.spo'], /--out belongs to kg merge/],
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

  it('merge writes the union of the files, normalised, whose sha256 is the version stamp; malformed lines named and left out', async () => {
    const a = path.join(dir, 'a.spo');
    const b = path.join(dir, 'b.spo');
    const out = path.join(dir, 'union.spo');
    writeFileSync(a, '高血压\t类别\t疾病\n头痛\t类别\t症状\n');
    writeFileSync(b, '头痛\t类别\t症状\n糖尿病 \t词表\t疾病\n糖尿病\t词表\t疾病\r\n');
    const { code, stdout, stderr } = await rmbert('merge', a, b, '--out', out);
    assert.equal(code, 0, stderr);
    // Sorted by UTF-16 code units: 头 U+5934 < 糖 U+7CD6 < 高 U+9AD8.
    const text = readFileSync(out, 'utf8');
    assert.equal(text, '头痛\t类别\t症状\n糖尿病\t词表\t疾病\n高血压\t类别\t疾病\n');
    const sha = createHash('sha256').update(text).digest('hex');
    assert.match(stdout, new RegExp(`3 distinct triples \\(1 duplicates removed\\)\nKG version ${sha}`));
    assert.match(stderr, new RegExp(`${b.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}:2: `));
    assert.match(stderr, /b\.spo: 3 lines, 2 valid triples, 1 malformed skipped/);
  });

  it('merge of files without a valid triple writes nothing and fails; a missing file is named', async () => {
    const bad = path.join(dir, 'bad.spo');
    const out = path.join(dir, 'none.spo');
    writeFileSync(bad, 'not a triple\n');
    const empty = await rmbert('merge', bad, '--out', out);
    assert.equal(empty.code, 1);
    assert.match(empty.stderr, /no valid triple; nothing was written/);
    assert.equal(existsSync(out), false);
    const missing = await rmbert('merge', path.join(dir, 'nope.spo'), '--out', out);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read .*nope\.spo: ENOENT/);
  });
});
