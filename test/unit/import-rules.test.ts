/** The import rules (.dependency-cruiser.cjs) catch what they forbid, on a fixture tree of src/ folders. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../helpers/paths.ts';

interface Violation {
  from: string;
  to: string;
  rule: { name: string };
}

/** The violations dependency-cruiser finds under cwd/src with the repository's rules (JSON output). */
function cruise(cwd: string): Promise<Violation[]> {
  const bin = path.join(REPO_ROOT, 'node_modules/dependency-cruiser/bin/dependency-cruise.mjs');
  const args = [bin, 'src', '--config', path.join(REPO_ROOT, '.dependency-cruiser.cjs'), '--output-type', 'json'];
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd, maxBuffer: 64 << 20 }, (error, stdout, stderr) => {
      if (error || !stdout) return reject(new Error(`dependency-cruiser failed: ${error?.message ?? ''} ${stderr}`));
      resolve((JSON.parse(stdout) as { summary: { violations: Violation[] } }).summary.violations);
    });
  });
}

test('import rules: a folder importing past its rules, a value import of config in stream, a package outside its home and a cycle all fail', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rmbert-import-rules-'));
  try {
    const put = (file: string, text: string) => {
      mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
      writeFileSync(path.join(dir, file), text);
    };
    writeFileSync(path.join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { module: 'NodeNext', moduleResolution: 'NodeNext', allowImportingTsExtensions: true, noEmit: true }, include: ['src'] }));
    symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
    put('src/config/settings.ts', 'export interface Settings { a: number }\nexport const DEFAULTS = { a: 1 };\n');
    // Allowed: a type-only import of config in stream, domain from pipeline, kafkajs in stream.
    put('src/stream/ok.ts', "import type { Settings } from '../config/settings.ts';\nimport { Kafka } from 'kafkajs';\nexport const k = (s: Settings) => new Kafka({ brokers: [String(s.a)] });\n");
    put('src/domain/types.ts', 'export type Id = string;\n');
    put('src/pipeline/flow.ts', "import type { Id } from '../domain/types.ts';\nexport const id = (x: Id) => x;\n");
    // Forbidden, one of each kind.
    put('src/domain/bad.ts', "import { k } from '../stream/ok.ts';\nexport const b = k;\n");
    put('src/stream/bad.ts', "import { DEFAULTS } from '../config/settings.ts';\nexport const d = DEFAULTS;\n");
    put('src/metrics/bad.ts', "import { Kafka } from 'kafkajs';\nexport const m = Kafka;\n");
    put('src/pipeline/a.ts', "import { b } from './b.ts';\nexport const a = () => b;\n");
    put('src/pipeline/b.ts', "import { a } from './a.ts';\nexport const b = () => a;\n");
    const violations = await cruise(dir);
    // node_modules is a link to the repository's, which the resolver follows: keep the part after it.
    const found = violations.map((v) => `${v.rule.name} ${v.from} -> ${v.to.replace(/^.*node_modules\//, 'node_modules/')}`).sort();
    assert.deepEqual(found, [
      'domain-imports src/domain/bad.ts -> src/stream/ok.ts',
      'kafkajs-home src/metrics/bad.ts -> node_modules/kafkajs/index.js',
      // A cycle is reported once, on the edge that closes it.
      'no-circular src/pipeline/a.ts -> src/pipeline/b.ts',
      'stream-config-types-only src/stream/bad.ts -> src/config/settings.ts',
    ]);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('import rules: the repository itself has no violation', async () => {
  assert.deepEqual(await cruise(REPO_ROOT), []);
});
