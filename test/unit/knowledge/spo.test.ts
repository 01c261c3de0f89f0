import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { InMemoryKnowledgeGraph, kgVersionOf, loadEmbeddedGraph, loadSpoFile, parseSpoLine, readSpoFile } from '../../../src/knowledge/index.ts';
import type { Triple } from '../../../src/domain/index.ts';
import type { MalformedLine } from '../../../src/knowledge/index.ts';
import { SchemaError } from '../../../src/errors/index.ts';
import { REPO_ROOT, sharedData } from '../../helpers/paths.ts';

const dir = mkdtempSync(path.join(tmpdir(), 'rmbert-spo-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let fileCount = 0;
function file(content: string | Buffer): string {
  const p = path.join(dir, `f${fileCount++}.spo`);
  writeFileSync(p, content);
  return p;
}

async function readAll(p: string, chunk = 1000): Promise<{ triples: Triple[]; malformed: MalformedLine[]; lines: number }> {
  const triples: Triple[] = [];
  const malformed: MalformedLine[] = [];
  let lines = 0;
  for await (const c of readSpoFile(p, chunk)) {
    triples.push(...c.triples);
    malformed.push(...c.malformed);
    lines = c.lines;
  }
  return { triples, malformed, lines };
}

describe('parseSpoLine', () => {
  it('accepts three non-empty tab-separated fields as they are', () => {
    assert.deepEqual(parseSpoLine('眼睛发红\t类别\t症状'), { subject: '眼睛发红', relation: '类别', object: '症状' });
    assert.deepEqual(parseSpoLine('胸部及腹部CT\t类别\t检查'), { subject: '胸部及腹部CT', relation: '类别', object: '检查' });
    assert.deepEqual(parseSpoLine('a b\tr\t𠀀'), { subject: 'a b', relation: 'r', object: '𠀀' });
  });

  it('rejects everything else with a reason', () => {
    const cases: [string, RegExp][] = [
      ['', /empty line/],
      ['a\tb', /expected 3 tab-separated fields, found 2/],
      ['a\tb\tc\td', /found 4/],
      ['a b c', /found 1/],
      ['\tb\tc', /subject is empty/],
      ['a\t\tc', /relation is empty/],
      ['a\tb\t', /object is empty/],
      ['a\t  \tc', /relation is only whitespace/],
      [' a\tb\tc', /subject has leading or trailing whitespace/],
      ['a\tb\tc\u3000', /object has leading or trailing whitespace/],
      ['a\u0000b\tr\to', /subject contains control character U\+0000 at column 2/],
      ['a\tr\u001b\to', /relation contains control character U\+001B/],
      ['a\tr\to\u0085x', /object contains control character U\+0085/],
      ['a\tr\to\u007f', /control character U\+007F/],
      ['a\ud800\tr\to', /subject contains an unpaired surrogate U\+D800/],
      ['a\tr\t\udc00o', /object contains an unpaired surrogate U\+DC00/],
    ];
    for (const [line, reason] of cases) {
      const parsed = parseSpoLine(line);
      assert.equal(typeof parsed, 'string', JSON.stringify(line));
      assert.match(parsed as string, reason, JSON.stringify(line));
    }
  });
});

describe('readSpoFile', () => {
  it('reports malformed lines with their line numbers and keeps the valid ones', async () => {
    const bytes = Buffer.concat([
      Buffer.from('\ufeff肺炎\t类别\t疾病\r\n'), // 1: BOM and CRLF are accepted
      Buffer.from('bad line\n'), // 2
      Buffer.from('咳嗽\t类别\t症状\n'), // 3
      Buffer.from([0x61, 0xff, 0x09, 0x62, 0x09, 0x63, 0x0a]), // 4: invalid UTF-8
      Buffer.from('\n'), // 5: empty
      Buffer.from('a\x07\tb\tc\n'), // 6: BEL
      Buffer.from([0xed, 0xa0, 0x80, 0x09, 0x62, 0x09, 0x63, 0x0a]), // 7: UTF-8-encoded surrogate is invalid UTF-8
      Buffer.from('发热\t类别\t症状'), // 8: no final newline
    ]);
    const { triples, malformed, lines } = await readAll(file(bytes));
    assert.equal(lines, 8);
    assert.deepEqual(
      triples.map((t) => t.subject),
      ['肺炎', '咳嗽', '发热'],
    );
    assert.deepEqual(
      malformed.map((m) => m.line),
      [2, 4, 5, 6, 7],
    );
    assert.match(malformed[0].reason, /expected 3/);
    assert.equal(malformed[1].reason, 'invalid UTF-8');
    assert.equal(malformed[2].reason, 'empty line');
    assert.match(malformed[3].reason, /U\+0007/);
    assert.equal(malformed[4].reason, 'invalid UTF-8');
  });

  it('handles lines split across read chunks and tiny yield chunks', async () => {
    const lines: string[] = [];
    for (let i = 0; i < 50_000; i++) lines.push(`概念${i}\t类别\t${i % 3 ? '疾病' : '症状'}`);
    const p = file(`${lines.join('\n')}\n`);
    const { triples, malformed, lines: count } = await readAll(p, 7);
    assert.equal(count, 50_000);
    assert.equal(malformed.length, 0);
    assert.equal(triples.length, 50_000);
    assert.equal(triples[49_999].subject, '概念49999');
  });

  it('reads the shipped Medical.spo: 13,864 triples, nothing malformed', async () => {
    const { triples, malformed } = await readAll(path.join(REPO_ROOT, 'data/kg/Medical.spo'));
    assert.equal(triples.length, 13_864);
    assert.equal(malformed.length, 0);
    assert.equal(kgVersionOf(triples), '728f8070a8d99ff78503c83870f361c1746a38b169e9b86e610608803abed6b1');
  });
});

describe('kgVersionOf', () => {
  const a: Triple = { subject: '肺炎', relation: '类别', object: '疾病' };
  const b: Triple = { subject: '咳嗽', relation: '类别', object: '症状' };
  it('depends on the set of triples only (not order or duplicates)', () => {
    assert.equal(kgVersionOf([a, b]), kgVersionOf([b, a, b]));
    assert.notEqual(kgVersionOf([a, b]), kgVersionOf([a]));
    assert.notEqual(kgVersionOf([a]), kgVersionOf([{ ...a, object: '症状' }]));
    assert.match(kgVersionOf([]), /^[0-9a-f]{64}$/);
    // sha256 of the empty string: no triples, no lines.
    assert.equal(kgVersionOf([]), 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
  });

  it('is the sha256 of the sorted distinct lines', async () => {
    const { createHash } = await import('node:crypto');
    const expected = createHash('sha256').update('咳嗽\t类别\t症状\n肺炎\t类别\t疾病\n').digest('hex');
    assert.equal(kgVersionOf([a, b, a]), expected);
  });
});

describe('loadSpoFile (in-memory graph)', () => {
  it('loads, stamps, counts and skips malformed lines with line numbers', async () => {
    const g = new InMemoryKnowledgeGraph();
    const seen: MalformedLine[] = [];
    const progress: number[] = [];
    const p = file('肺炎\t类别\t疾病\n肺炎\t类别\t疾病\n咳嗽\t类别\n咳嗽\t类别\t症状\n肺炎\t类别\t症状\n');
    const report = await loadSpoFile(p, g, { batchSize: 2, onMalformed: (m) => seen.push(m), onProgress: (x) => progress.push(x.bytesRead) });
    assert.deepEqual(seen, [{ line: 3, reason: 'expected 3 tab-separated fields, found 2' }]);
    assert.equal(report.lines, 5);
    assert.equal(report.validTriples, 4);
    assert.equal(report.distinctTriples, 3);
    assert.equal(report.duplicates, 1);
    assert.equal(report.malformedCount, 1);
    assert.equal(report.stamp.triples, 3);
    assert.equal(report.stamp.concepts, 4);
    assert.equal(report.stamp.source, path.basename(p));
    assert.equal(report.stamp.version, report.fileVersion);
    assert.deepEqual(await g.stamp(), report.stamp);
    assert.ok(progress.length >= 2);
    assert.equal(progress.at(-1), Buffer.byteLength('肺炎\t类别\t疾病\n肺炎\t类别\t疾病\n咳嗽\t类别\n咳嗽\t类别\t症状\n肺炎\t类别\t症状\n'));
  });

  it('is idempotent; a load on top of other triples stamps the union; replace stamps the file alone', async () => {
    const g = new InMemoryKnowledgeGraph();
    const one = file('肺炎\t类别\t疾病\n');
    const two = file('咳嗽\t类别\t症状\n');
    const first = await loadSpoFile(one, g);
    const again = await loadSpoFile(one, g);
    assert.equal(again.stamp.version, first.stamp.version);
    assert.deepEqual(await g.stats(), { concepts: 2, triples: 1 });
    const union = await loadSpoFile(two, g);
    assert.notEqual(union.stamp.version, union.fileVersion);
    assert.equal(
      union.stamp.version,
      kgVersionOf([
        { subject: '肺炎', relation: '类别', object: '疾病' },
        { subject: '咳嗽', relation: '类别', object: '症状' },
      ]),
    );
    const replaced = await loadSpoFile(two, g, { replace: true });
    assert.equal(replaced.stamp.version, replaced.fileVersion);
    assert.deepEqual(await g.stats(), { concepts: 2, triples: 1 });
  });

  it('loads Medical.spo and HowNet.spo completely', async () => {
    const medical = new InMemoryKnowledgeGraph();
    const m = await loadSpoFile(sharedData('kbert-kgs', 'Medical.spo'), medical);
    assert.deepEqual(await medical.stats(), { concepts: 13_558, triples: 13_864 });
    assert.equal(m.malformedCount, 0);
    assert.equal((await medical.subjects()).length, 13_553);
    const hownet = new InMemoryKnowledgeGraph();
    const h = await loadSpoFile(sharedData('kbert-kgs', 'HowNet.spo'), hownet);
    assert.deepEqual(await hownet.stats(), { concepts: 46_581, triples: 52_576 });
    assert.equal(h.stamp.version, '39c1f13f15d38b13fac6cd867a393561e9a59046c49ad7a2a88886d8a75f9b45');
  });

  it('says what is wrong with a missing file or a bad batch size', async () => {
    const g = new InMemoryKnowledgeGraph();
    await assert.rejects(loadSpoFile(path.join(dir, 'nope.spo'), g), (e: unknown) => e instanceof SchemaError && /cannot read .*nope\.spo/.test(e.message));
    await assert.rejects(loadSpoFile(dir, g), /is not a file/);
    await assert.rejects(loadSpoFile(file('a\tb\tc\n'), g, { batchSize: 0 }), /batch size must be a positive integer/);
  });
});

describe('loadEmbeddedGraph', () => {
  it('loads the shipped Medical.spo into memory by default', async () => {
    const { graph, report } = await loadEmbeddedGraph();
    assert.equal(report.file, path.join(REPO_ROOT, 'data/kg/Medical.spo'));
    assert.equal(report.stamp.version, '728f8070a8d99ff78503c83870f361c1746a38b169e9b86e610608803abed6b1');
    assert.deepEqual(await graph.stats(), { concepts: 13_558, triples: 13_864 });
  });
});
