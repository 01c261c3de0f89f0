/**
 * A generated corpus of hostile input records for the stage (issue 15 item 8): malformed Avro and
 * framing, invalid UTF-8 in every string field, and valid documents whose text or id is built to hurt
 * (control, bidirectional and zero-width characters, Cypher-looking text, astral characters, huge
 * sentences, entity-dense text, text at and over the length limit). Deterministic for a seed.
 *
 * Each case says what must become of it: `dead` (dead-lettered), or `any` (an output or a dead letter);
 * either way exactly once. accountHostile checks a run's outputs and dead letters against the cases.
 */
import type { Document } from '../../../src/domain/index.ts';
import { mulberry32 } from '../../../src/domain/random.ts';
import { codecs, type DeadLetterRecord, type EntityAnnotationsRecord } from '../../../src/stream/codecs.ts';
import { toEmrDocumentRecord } from '../../../src/stream/records.ts';

export interface HostileCase {
  /** Index in the corpus; also in the Kafka key unless the case is about keys. */
  n: number;
  kind: string;
  key: Buffer | null;
  value: Buffer | null;
  expect: 'dead' | 'any';
  /** The document id an output would carry, for cases that decode. */
  documentId: string | null;
}

/** Where a case's record landed in the input topic. */
export interface Placed extends HostileCase {
  partition: number;
  offset: string;
}

/** Invalid UTF-8 sequences, 4 bytes each (the placeholder's length). */
const INVALID_UTF8: readonly number[][] = [
  [0xff, 0xfe, 0x41, 0x41], // bytes that never occur in UTF-8
  [0x80, 0x41, 0x41, 0x41], // a lone continuation byte
  [0xc0, 0xaf, 0x41, 0x41], // an overlong '/'
  [0xe0, 0x80, 0xaf, 0x41], // an overlong 3-byte form
  [0xed, 0xa0, 0x80, 0x41], // a UTF-16 surrogate encoded (CESU-8)
  [0xe4, 0xb8, 0x41, 0x41], // a 3-byte sequence cut short
  [0xf0, 0x9f, 0x98, 0x41], // a 4-byte sequence cut short
  [0xf4, 0x90, 0x80, 0x80], // above U+10FFFF
  [0xf8, 0x88, 0x80, 0x80], // a 5-byte form
  [0xc3, 0x28, 0x41, 0x41], // a lead byte followed by ASCII
];
const PLACEHOLDER = 'QQQQ';

/** Texts of valid documents built to hurt; the stage must annotate or dead-letter each, once. */
function hostileTexts(rand: () => number, maxTextChars: number): { kind: string; text: string }[] {
  const base = '患者主因头部外伤出血伴头昏3.5小时入院。';
  const t: { kind: string; text: string }[] = [];
  const controls = Array.from({ length: 32 }, (_, i) => String.fromCharCode(i)).join('');
  t.push({ kind: 'control-characters', text: `${base}${controls}${base}` });
  t.push({ kind: 'nul-only', text: '\u0000\u0000\u0000' });
  t.push({ kind: 'del-and-c1', text: `${base}\u007f\u0080\u0085\u009f${base}` });
  t.push({ kind: 'bidi-override', text: `\u202e${base}\u202c\u2066${base}\u2069` });
  t.push({ kind: 'bidi-only', text: '\u202e\u202d\u202c\u2067\u2068' });
  t.push({ kind: 'zero-width', text: base.split('').join('\u200b') });
  t.push({ kind: 'zero-width-joiners', text: base.split('').join('\u200d\u200c') });
  t.push({ kind: 'bom-inside', text: `\ufeff${base}\ufeff${base}` });
  t.push({ kind: 'literal-replacement-character', text: `${base}\ufffd${base}` });
  t.push({ kind: 'noncharacters', text: `${base}\ufffe\uffff\ufdd0${base}` });
  t.push({ kind: 'private-use', text: `${base}\ue000\uf8ff${base}` });
  t.push({ kind: 'astral-emoji', text: `${base}😷🤒🏥${base}` });
  t.push({ kind: 'astral-cjk-ext-b', text: `${base}𠀀𠀁𪛖${base}` });
  t.push({ kind: 'combining-marks', text: `${base}${'e\u0301\u0308\u0323'.repeat(200)}` });
  t.push({ kind: 'zalgo', text: `咳${'\u0300\u0301\u0302\u0303\u0304'.repeat(400)}嗽` });
  t.push({ kind: 'line-separators', text: `${base}\u2028${base}\u2029${base}` });
  t.push({ kind: 'crlf-mix', text: `${base}\r\n\r${base}\n\n\n${base}` });
  t.push({ kind: 'tabs', text: `\t\t${base}\t${base}\t` });
  t.push({ kind: 'whitespace-only', text: ' \t\n\u3000\u00a0 ' });
  t.push({ kind: 'empty', text: '' });
  t.push({ kind: 'one-character', text: '痛' });
  t.push({ kind: 'punctuation-only', text: '。。。，，，！？；：'.repeat(50) });
  t.push({ kind: 'full-stops', text: '。'.repeat(3000) });
  t.push({ kind: 'ascii-only', text: 'Patient admitted with headache; BP 140/90; no fever.' });
  t.push({ kind: 'digits-only', text: '1234567890'.repeat(100) });
  t.push({ kind: 'cypher-delete', text: `${base}MATCH (n) DETACH DELETE n` });
  t.push({ kind: 'cypher-quote-escape', text: `${base}'}) MATCH (n) SET n.name = 'x' RETURN n //` });
  t.push({ kind: 'cypher-call', text: `头痛"}) CALL db.labels() YIELD label RETURN label //` });
  t.push({ kind: 'cypher-load-csv', text: `${base}LOAD CSV FROM 'file:///etc/passwd' AS l RETURN l` });
  t.push({ kind: 'cypher-unicode-escape', text: `${base}\\u0027) DETACH DELETE n //` });
  t.push({ kind: 'cypher-backticks', text: '`Concept` {name: "头痛"}) DELETE c //' });
  t.push({ kind: 'json-lookalike', text: '{"id": "x", "text": "头痛", "__proto__": {"polluted": true}}' });
  t.push({ kind: 'proto-keys', text: '__proto__ constructor prototype toString hasOwnProperty' });
  t.push({ kind: 'html-script', text: `${base}<script>alert(1)</script><img src=x onerror=alert(1)>` });
  t.push({ kind: 'sql-lookalike', text: `${base}'; DROP TABLE patients; --` });
  t.push({ kind: 'format-strings', text: `${base}%s%s%s%n%x\${process.exit()}{{7*7}}` });
  t.push({ kind: 'regex-bomb', text: `${'a'.repeat(5000)}!` });
  t.push({ kind: 'long-sentence', text: '头痛发热咳嗽'.repeat(1000) });
  t.push({ kind: 'many-short-sentences', text: '痛。'.repeat(2500) });
  t.push({ kind: 'entity-dense', text: '头痛、发热、咳嗽、腹痛、胸闷、'.repeat(400) });
  t.push({ kind: 'repeated-entity', text: '高血压'.repeat(2000) });
  t.push({ kind: 'mixed-scripts', text: `${base}مريض يعاني من صداع ${base} пациент ${base} 환자 두통` });
  t.push({ kind: 'rtl-arabic-only', text: 'مريض يعاني من صداع وحمى منذ ثلاثة أيام.' });
  t.push({ kind: 'fullwidth-ascii', text: 'Ｐａｔｉｅｎｔ　ｈｅａｄａｃｈｅ' });
  t.push({ kind: 'lone-high-surrogate-escaped', text: `${base}\\ud800${base}` });
  t.push({ kind: 'at-length-limit', text: '咳'.repeat(maxTextChars) });
  t.push({ kind: 'over-length-limit', text: '咳'.repeat(maxTextChars + 1) });
  // Random strings over a mix of ranges (astral included), valid UTF-16 only.
  for (let k = 0; k < 13; k++) {
    const len = 1 + Math.floor(rand() * 400);
    let s = '';
    for (let i = 0; i < len; i++) {
      const r = rand();
      const cp = r < 0.4 ? 0x4e00 + Math.floor(rand() * 0x5000) : r < 0.6 ? Math.floor(rand() * 0x80) : r < 0.8 ? 0x3000 + Math.floor(rand() * 0x100) : r < 0.9 ? 0x1f300 + Math.floor(rand() * 0x300) : 0x2000 + Math.floor(rand() * 0x70);
      s += String.fromCodePoint(cp);
    }
    t.push({ kind: `random-text-${k}`, text: s });
  }
  return t;
}

/** Document ids built to hurt (the id keys the output). */
const HOSTILE_IDS: readonly { kind: string; id: (n: number) => string }[] = [
  { kind: 'id-cypher', id: (n) => `x'}) DETACH DELETE n //-${n}` },
  { kind: 'id-newline', id: (n) => `line1\nline2-${n}` },
  { kind: 'id-control', id: (n) => `\u0000\u0007\u001b[31m-${n}` },
  { kind: 'id-bidi', id: (n) => `\u202eevil-${n}` },
  { kind: 'id-zero-width', id: (n) => `id\u200b\u200d-${n}` },
  { kind: 'id-emoji', id: (n) => `😷-${n}` },
  { kind: 'id-long', id: (n) => `${'长'.repeat(5000)}-${n}` },
  { kind: 'id-spaces', id: (n) => `   -${n}   ` },
  { kind: 'id-replacement-character', id: (n) => `\ufffd-${n}` },
  { kind: 'id-path', id: (n) => `../../etc/passwd-${n}` },
];

/**
 * The corpus: at least 200 cases. `marker` is put into every valid document's patientRef (and the
 * Kafka key), so that a test can check that no case's content reaches the logs.
 */
export function hostileCorpus(options: { seed?: number; maxTextChars: number; prefix?: string }): HostileCase[] {
  const rand = mulberry32(options.seed ?? 15);
  const prefix = options.prefix ?? 'hostile';
  const codec = codecs().emrDocument;
  const cases: HostileCase[] = [];
  const add = (kind: string, value: Buffer | null, expect: 'dead' | 'any', documentId: string | null, key?: Buffer | null) => {
    const n = cases.length;
    cases.push({ n, kind, key: key === undefined ? Buffer.from(`${prefix}-${n}`) : key, value, expect, documentId });
  };
  const doc = (id: string, text: string): Document => ({
    id,
    sourceSystem: 'hostile-his',
    patientRef: `pt-SECRET-${prefix}`,
    text,
    language: 'zh',
    createdAt: 1764547200000,
    section: '入院记录',
  });
  const encode = (d: Document) => codec.encode(toEmrDocumentRecord(d));
  const randomBytes = (len: number) => Buffer.from(Array.from({ length: len }, () => Math.floor(rand() * 256)));
  const valid = encode(doc(`${prefix}-template`, '患者咳嗽三天。'));
  const header = valid.subarray(0, 10);

  // Malformed framing and Avro.
  add('no-value', null, 'dead', null);
  add('empty-value', Buffer.alloc(0), 'dead', null);
  for (let k = 0; k < 20; k++) add('random-bytes', randomBytes(1 + Math.floor(rand() * 300)), 'dead', null);
  for (let k = 0; k < 15; k++) add('header-then-random-body', Buffer.concat([header, randomBytes(Math.floor(rand() * 200))]), 'dead', null);
  for (let k = 1; k <= 15; k++) add('truncated-record', valid.subarray(0, Math.floor((k * (valid.length - 1)) / 16)), 'dead', null);
  for (let k = 0; k < 8; k++) {
    const b = Buffer.from(valid);
    b[2 + (k % 8)] ^= 0x5a;
    add('wrong-fingerprint', b, 'dead', null);
  }
  for (const magic of [[0x00, 0x00], [0xc3, 0x00], [0x01, 0xc3], [0x4f, 0x62]]) add('bad-magic', Buffer.concat([Buffer.from(magic), valid.subarray(2)]), 'dead', null);
  // A string length far beyond the record (zig-zag varints), and negative lengths.
  for (const len of [Buffer.from([0x80, 0x80, 0x80, 0x80, 0x20]), Buffer.from([0xfe, 0xff, 0xff, 0xff, 0x0f]), Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])]) {
    add('huge-length', Buffer.concat([header, len, Buffer.from('abc')]), 'dead', null);
  }
  for (const len of [Buffer.from([0x01]), Buffer.from([0x03]), Buffer.from([0xff, 0x01])]) add('negative-length', Buffer.concat([header, len, Buffer.from('abcdef')]), 'dead', null);
  add('wrong-schema-feedback', codecs().feedback.encode({ documentId: 'x', text: '错误', entities: [], annotator: 'a', modelVersionSeen: null, createdAt: 1 }), 'dead', null);
  add('plain-json', Buffer.from(JSON.stringify(doc(`${prefix}-json`, '头痛'))), 'dead', null);
  add('plain-text', Buffer.from('患者头痛三天'), 'dead', null);
  for (let k = 0; k < 3; k++) {
    const id = `${prefix}-trailing-${k}`;
    add('trailing-bytes', Buffer.concat([encode(doc(id, '患者咳嗽三天。')), randomBytes(1 + k * 7)]), 'any', id);
  }

  // Invalid UTF-8 in each string field.
  const fields: (keyof Document)[] = ['text', 'id', 'sourceSystem', 'patientRef', 'language', 'section'];
  for (const field of fields) {
    INVALID_UTF8.forEach((bytes, k) => {
      const id = `${prefix}-utf8-${field}-${k}`;
      const d = { ...doc(id, '患者咳嗽三天。'), [field]: field === 'text' ? `前${PLACEHOLDER}后` : PLACEHOLDER };
      const b = encode(d as Document);
      const at = b.indexOf(Buffer.from(PLACEHOLDER));
      for (let i = 0; i < 4; i++) b[at + i] = bytes[i];
      add(`invalid-utf8-${field}`, b, 'dead', field === 'id' ? null : id);
    });
  }

  // Valid documents built to hurt: each text alone, and after ordinary text.
  for (const { kind, text } of hostileTexts(rand, options.maxTextChars)) {
    const id1 = `${prefix}-${kind}-a`;
    add(kind, encode(doc(id1, text)), 'any', id1);
    if (text.length < options.maxTextChars) {
      const id2 = `${prefix}-${kind}-b`;
      add(`${kind}-after-text`, encode(doc(id2, `入院记录：${text}`)), 'any', id2);
    }
  }
  for (const { kind, id } of HOSTILE_IDS) {
    const docId = id(cases.length);
    add(kind, encode(doc(docId, '患者主因头痛伴发热三天入院。')), 'any', docId);
  }
  add('empty-id', encode(doc('', '患者咳嗽三天。')), 'any', '');
  // Odd but valid field values.
  for (const [kind, patch] of [
    ['created-at-negative', { createdAt: -1 }],
    ['created-at-zero', { createdAt: 0 }],
    ['created-at-far', { createdAt: 2 ** 52 }],
    ['section-null', { section: null }],
    ['section-long', { section: '节'.repeat(20_000) }],
    ['language-odd', { language: '\u0000xx-😷' }],
    ['source-system-empty', { sourceSystem: '' }],
  ] as [string, Partial<Document>][]) {
    const id = `${prefix}-${kind}`;
    add(kind, encode({ ...doc(id, '患者咳嗽三天。'), ...patch }), 'any', id);
  }
  // Keys: none, binary, huge.
  const keyed = (kind: string, key: Buffer | null) => {
    const id = `${prefix}-${kind}`;
    add(kind, encode(doc(id, '患者咳嗽三天。')), 'any', id, key);
  };
  keyed('key-null', null);
  keyed('key-binary', Buffer.from([0xff, 0x00, 0xfe, 0x80]));
  keyed('key-huge', Buffer.alloc(64 * 1024, 0x41));
  return cases;
}

export interface HostileAccount {
  cases: number;
  /** One line per case not handled as it must be: lost, duplicated, or an output where a dead letter was due. */
  unhandled: string[];
}

/**
 * Checks every case: exactly once in outputs (by document id; part 0 of a paged output) and dead
 * letters (by source partition and offset in `inputTopic`), and dead-lettered where it must be.
 */
export function accountHostile(
  placed: readonly Placed[],
  inputTopic: string,
  outputs: readonly { record: EntityAnnotationsRecord }[],
  deadLetters: readonly { record: DeadLetterRecord }[],
): HostileAccount {
  const outCount = new Map<string, number>();
  for (const o of outputs) {
    // A paged output counts once, by its part 0.
    if (o.record.part > 0) continue;
    outCount.set(o.record.documentId, (outCount.get(o.record.documentId) ?? 0) + 1);
  }
  const deadCount = new Map<string, number>();
  for (const d of deadLetters) {
    if (d.record.sourceTopic !== inputTopic) continue;
    const at = `${d.record.sourcePartition}:${d.record.sourceOffset}`;
    deadCount.set(at, (deadCount.get(at) ?? 0) + 1);
  }
  const unhandled: string[] = [];
  for (const c of placed) {
    const outs = c.documentId === null ? 0 : (outCount.get(c.documentId) ?? 0);
    const dead = deadCount.get(`${c.partition}:${c.offset}`) ?? 0;
    const total = outs + dead;
    if (total === 0) unhandled.push(`#${c.n} ${c.kind}: lost`);
    else if (total > 1) unhandled.push(`#${c.n} ${c.kind}: ${outs} outputs and ${dead} dead letters`);
    else if (c.expect === 'dead' && dead !== 1) unhandled.push(`#${c.n} ${c.kind}: annotated, but it must be dead-lettered`);
  }
  return { cases: placed.length, unhandled };
}
