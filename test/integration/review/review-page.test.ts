/**
 * The review page in a real headless browser (Debian's chromium, driven by puppeteer-core) against a
 * real `rmbert review` process and the real Kafka of scripts/infra.sh:
 *   - documents and the stage's entity records (one paged over two records, one in an aborted
 *     transaction that must never show) are joined into the queue, least confident first;
 *   - a reviewer signs in, corrects 高血 -> 高血压 with the keyboard only and submits; the Feedback
 *     record read back from Kafka is the corrected complete list (with the stage's assertion), with
 *     the reviewer's id and the model version seen; on the next document the keyboard adds a span over
 *     a surrogate pair and marks an entity historical, and a mouse selection maps to its offsets;
 *     submitting the same review again makes no second record;
 *   - requests without a reviewer are refused, and so are cross-site writes (a page on another site
 *     posting with the reviewer's cookie, a request with a foreign Origin and a valid CSRF token);
 *   - the queue survives a restart of the process.
 * RMBERT_REVIEW_SCREENSHOT=path writes a PNG of the page with the correction made (the README's).
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { after, before, test } from 'node:test';
import type { Kafka } from 'kafkajs';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';
import { startMetricsServer, type MetricsServer } from '../../../src/metrics/server.ts';
import { PromTrainerMetrics } from '../../../src/metrics/trainer-metrics.ts';
import { codecs, type EntityAnnotationsRecord, type FeedbackRecord } from '../../../src/stream/codecs.ts';
import { KAFKA_BROKERS } from '../../helpers/infra.ts';
import { uniqueName } from '../../helpers/names.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { Collector, TestProducer, createTopics, tempDir, testKafka, testNames, type TestNames } from '../stream/harness.ts';

// The functions given to page.evaluate run in the browser; the project's typings are Node's only.
declare const document: any;
declare const window: any;
declare const MouseEvent: any;

const BIN = path.join(REPO_ROOT, 'bin/rmbert.js');
const CHROMIUM = process.env.RMBERT_TEST_CHROMIUM ?? '/usr/bin/chromium';
const TOKEN = randomBytes(24).toString('base64url');
const REVIEWER = 'clinician-7';
const MODEL = 'rmbert-medical-kg-crf+abc123';

const TEXT_A = '否认高血压，头昏3天。';
// 𠮷 is a surrogate pair: the offsets after it are UTF-16 code units, one more than the characters.
const TEXT_B = '患者𠮷腹痛，有糖尿病史。';
const TEXT_C = '咳嗽两周。';
const TEXT_D = '恶心呕吐一天。';

let names: TestNames;
let kafka: Kafka;
let tmp: { dir: string; remove(): Promise<void> };
let review: { child: ChildProcess; url: string; lines: string[] } | null = null;
let browser: Browser | null = null;
let attacker: Server | null = null;
let feedback: Collector<FeedbackRecord> | null = null;
// The trainer's own metrics, served as the trainer serves them, driven below as its rounds would drive them.
const trainerMetrics = new PromTrainerMetrics();
let trainerServer: MetricsServer | null = null;
const groupId = uniqueName('review-page');

function annotations(documentId: string, createdAt: number, entities: [number, number, string, string, number][], extra: Partial<EntityAnnotationsRecord> = {}): EntityAnnotationsRecord {
  return {
    documentId,
    modelVersion: MODEL,
    kgVersion: 'kg-test',
    engine: 'onnxruntime-cpu',
    entities: entities.map(([start, end, text, type, score]) => ({ start, end, text, type, score, linked: [{ relation: '类别', object: type === 'Disease' ? '疾病' : '症状' }], assertion: null })),
    kgDegraded: false,
    truncated: false,
    windowed: false,
    linkedDropped: false,
    part: 0,
    parts: 1,
    timingsMs: {},
    documentCreatedAt: createdAt,
    annotatedAt: createdAt + 5,
    ...extra,
  };
}

async function startReview(stateDir: string): Promise<{ child: ChildProcess; url: string; lines: string[] }> {
  const env = {
    PATH: process.env.PATH ?? '',
    HOME: process.env.HOME ?? '',
    RMBERT_KAFKA_BROKERS: KAFKA_BROKERS.join(','),
    RMBERT_INPUT_TOPIC: names.input,
    RMBERT_OUTPUT_TOPIC: names.output,
    RMBERT_DLQ_TOPIC: names.deadLetter,
    RMBERT_FEEDBACK_TOPIC: names.feedback,
    RMBERT_MODEL_UPDATES_TOPIC: names.modelUpdates,
    RMBERT_REVIEW_TOKENS_FILE: path.join(tmp.dir, 'tokens'),
    RMBERT_REVIEW_PORT: '0',
    RMBERT_REVIEW_STATE_DIR: stateDir,
    RMBERT_REVIEW_GROUP_ID: groupId,
    RMBERT_REVIEW_TRAINER_METRICS_URL: `${trainerServer!.url}/metrics`,
    RMBERT_REVIEW_TRAINER_POLL_MS: '300',
  };
  const child = spawn(process.execPath, [BIN, 'review'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rmbert review did not start in 60 s: ${stderr}`)), 60_000);
    let buffered = '';
    child.stdout!.on('data', (d: Buffer) => {
      buffered += d.toString();
      let nl: number;
      while ((nl = buffered.indexOf('\n')) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        lines.push(line);
        const event = JSON.parse(line) as { msg: string; url?: string };
        if (event.msg === 'review page listening') {
          clearTimeout(timer);
          resolve(event.url!);
        }
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`rmbert review exited ${code}: ${stderr}`));
    });
  });
  return { child, url, lines };
}

async function stopReview(signal: NodeJS.Signals = 'SIGTERM'): Promise<number | null> {
  if (!review) return null;
  const { child } = review;
  review = null;
  if (child.exitCode !== null) return child.exitCode;
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  child.kill(signal);
  return exited;
}

async function api(pathname: string, init: RequestInit = {}): Promise<{ status: number; body: any }> {
  const res = await fetch(`${review!.url}${pathname}`, { ...init, headers: { authorization: `Bearer ${TOKEN}`, ...(init.headers ?? {}) } });
  return { status: res.status, body: await res.json().catch(() => null) };
}

/** avsc's records are class instances: compare their data. */
function plain<T>(value: T): T {
  return JSON.parse(JSON.stringify(value)) as T;
}

async function waitFor<T>(what: string, fn: () => Promise<T | null | undefined | false>, timeoutMs = 60_000): Promise<T> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

before(async () => {
  names = testNames('review');
  kafka = testKafka();
  await createTopics(kafka, names, 1);
  tmp = await tempDir('rmbert-review-page');
  await writeFile(path.join(tmp.dir, 'tokens'), `# test reviewers\n${REVIEWER} ${TOKEN}\nclinician-8 ${randomBytes(24).toString('base64url')}\n`);

  const docs = [
    { id: 'doc-a', text: TEXT_A, createdAt: 1_700_000_000_000 },
    { id: 'doc-b', text: TEXT_B, createdAt: 1_700_000_000_100 },
    { id: 'doc-c', text: TEXT_C, createdAt: 1_700_000_000_200 },
    { id: 'doc-d', text: TEXT_D, createdAt: 1_700_000_000_300 },
  ];
  const producer = await TestProducer.connect(kafka);
  await producer.documents(names.input, docs.map((d) => ({ ...d, sourceSystem: 'test', patientRef: 'PATIENT-0042', language: 'zh', section: null })));
  await producer.close();

  // The stage writes its output in transactions: committed ones for doc-a and doc-b (paged in two parts),
  // an aborted one for doc-c (read_committed readers never see it).
  const tx = kafka.producer({ transactionalId: uniqueName('review-test-tx'), idempotent: true, maxInFlightRequests: 1 });
  await tx.connect();
  const send = async (records: EntityAnnotationsRecord[], commit: boolean) => {
    const t = await tx.transaction();
    await t.send({ topic: names.output, acks: -1, messages: records.map((r) => ({ key: r.documentId, value: codecs().entityAnnotations.encode(r) })) });
    await (commit ? t.commit() : t.abort());
  };
  await send([annotations('doc-c', docs[2].createdAt, [[0, 2, '咳嗽', 'Symptom', 0.2]])], false);
  const docA = annotations('doc-a', docs[0].createdAt, [[2, 4, '高血', 'Disease', 0.41], [6, 8, '头昏', 'Symptom', 0.93]]);
  // EntityAnnotations v3: the stage's assertion of 高血 (negated by 否认).
  docA.entities[0].assertion = { polarity: 'absent', certainty: 'certain', temporality: 'current', experiencer: 'patient', triggers: [{ start: 0, end: 2, text: '否认', property: 'negation' }] };
  await send([docA], true);
  await send(
    [
      annotations('doc-b', docs[1].createdAt, [[4, 6, '腹痛', 'Symptom', 0.7]], { part: 0, parts: 2 }),
      annotations('doc-b', docs[1].createdAt, [[8, 11, '糖尿病', 'Disease', 0.88]], { part: 1, parts: 2 }),
    ],
    true,
  );
  await send([annotations('doc-d', docs[3].createdAt, [[0, 2, '恶心', 'Symptom', 0.97], [2, 4, '呕吐', 'Symptom', 0.96]])], true);
  await tx.disconnect();

  feedback = await Collector.start(kafka, names.feedback, (b) => codecs().feedback.decode(b));
  trainerServer = await startMetricsServer({ registry: trainerMetrics.registry, port: 0, host: '127.0.0.1', readiness: () => ({ ready: true, checks: {} }) });
  review = await startReview(path.join(tmp.dir, 'state'));
  browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--font-render-hinting=none'],
  });
});

after(async () => {
  await browser?.close().catch(() => undefined);
  await stopReview().catch(() => undefined);
  await feedback?.close().catch(() => undefined);
  await trainerServer?.close().catch(() => undefined);
  await new Promise((r) => (attacker ? attacker.close(r) : r(null)));
  await tmp?.remove();
});

let page: Page;

test('the queue joins committed documents and entities (paged ones too), least confident first; nothing from an aborted transaction', async () => {
  const queue = await waitFor('three documents in the queue', async () => {
    const { body } = await api('/api/queue');
    return body?.counts.waiting >= 3 && body;
  });
  assert.deepEqual(queue.items.map((i: { documentId: string }) => i.documentId), ['doc-a', 'doc-b', 'doc-d']);
  assert.equal(queue.items[1].entityCount, 2, 'both parts of doc-b');
  assert.equal(queue.counts.pendingDocuments, 1, 'doc-c waits: its entities were aborted');
  const b = await api(`/api/items/${queue.items[1].reviewId}`);
  assert.equal(b.body.text, TEXT_B);
  assert.equal('patientRef' in b.body, false);
});

test('unauthenticated requests are refused', async () => {
  for (const p of ['/api/queue', '/api/session']) assert.equal((await fetch(`${review!.url}${p}`)).status, 401);
  const page0 = await fetch(`${review!.url}/`, { redirect: 'manual' });
  assert.equal(page0.status, 303);
  const { body } = await api('/api/queue');
  const post = await fetch(`${review!.url}/api/items/${body.items[0].reviewId}/submit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entities: [] }) });
  assert.equal(post.status, 401);
});

test('a reviewer signs in, corrects 高血 to 高血压 with the keyboard and submits: one Feedback record on Kafka', async () => {
  page = await browser!.newPage();
  await page.setViewport({ width: 1200, height: 720 });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${m.text()} ${m.location().url ?? ''}`);
  });
  await page.goto(review!.url);
  assert.match(page.url(), /\/login$/);
  await page.focus('#token');
  await page.keyboard.type(TOKEN);
  await page.keyboard.press('Enter');
  await page.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  assert.equal(await page.$eval('#text', (el) => el.textContent), TEXT_A, 'doc-a, the least confident, opens first');
  assert.match(await page.$eval('#progress', (el) => el.textContent ?? ''), /0 reviewed · 3 waiting/);
  assert.deepEqual(await page.$$eval('#legend span', (els) => els.map((e) => e.textContent)), ['1 Disease', '2 Symptom', '3 BodyPart', '4 Examine', '5 Cure']);
  assert.deepEqual(await page.$$eval('#text mark', (els) => els.map((e) => e.getAttribute('aria-label'))), ['高血: Disease, score 0.41, absent certain current patient', '头昏: Symptom, score 0.93']);

  // Keyboard only: the text has focus; Tab reaches the first entity, Shift+→ moves its end.
  assert.equal(await page.evaluate(() => document.activeElement?.id), 'text');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), '高血: Disease, score 0.41, absent certain current patient');
  const details = await page.$eval('#details', (el) => el.textContent ?? '');
  assert.match(details, /linked concepts: 类别 疾病/);
  assert.match(details, /assertion: absent, certain, current, patient \(triggers: 否认 negation\)/);
  await page.keyboard.down('Shift');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.up('Shift');
  assert.deepEqual(await page.$$eval('#text mark', (els) => els.map((e) => e.textContent)), ['高血压', '头昏']);
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), '高血压', 'focus stays on the corrected entity');
  // A wrong move and its undo, by keyboard too.
  await page.keyboard.press('Delete');
  assert.deepEqual(await page.$$eval('#text mark', (els) => els.map((e) => e.textContent)), ['头昏']);
  await page.keyboard.down('Control');
  await page.keyboard.press('z');
  await page.keyboard.up('Control');
  assert.deepEqual(await page.$$eval('#text mark', (els) => els.map((e) => e.textContent)), ['高血压', '头昏']);
  if (process.env.RMBERT_REVIEW_SCREENSHOT) {
    await page.focus('#text mark');
    await page.screenshot({ path: process.env.RMBERT_REVIEW_SCREENSHOT as `${string}.png`, fullPage: true });
  }
  await page.keyboard.down('Control');
  await page.keyboard.press('Enter');
  await page.keyboard.up('Control');
  await page.waitForFunction(() => document.getElementById('status')?.textContent?.startsWith('submitted'), { timeout: 30_000 });

  const [got] = await feedback!.waitFor(1, 30_000);
  assert.ok(got, 'a Feedback record on the feedback topic');
  assert.equal(got.key, 'doc-a');
  const { createdAt, ...rest } = plain(got.record);
  assert.ok(createdAt > 1_700_000_000_000);
  assert.deepEqual(rest, {
    documentId: 'doc-a',
    text: TEXT_A,
    entities: [
      // The stage's assertion (negated by 否认) goes with the corrected span: the reviewer left it as it was.
      { start: 2, end: 5, text: '高血压', type: 'Disease', assertion: { polarity: 'absent', certainty: 'certain', temporality: 'current', experiencer: 'patient' } },
      { start: 6, end: 8, text: '头昏', type: 'Symptom', assertion: null },
    ],
    annotator: REVIEWER,
    modelVersionSeen: MODEL,
  });
  // The page moved on to the next document; the progress counts say so.
  await page.waitForFunction(() => document.getElementById('text')?.textContent?.startsWith('患者'), { timeout: 10_000 });
  assert.match(await page.$eval('#progress', (el) => el.textContent ?? ''), /1 reviewed · 2 waiting/);
  assert.deepEqual(errors, []);

  // The same review submitted again (a retry): answered as sent, no second record.
  const queue = await api('/api/queue');
  assert.equal(queue.body.counts.reviewed, 1);
  const reviewIdA = (await page.evaluate(() => fetch('/api/queue').then((r) => r.json()))) as { items: { documentId: string }[] };
  assert.ok(!reviewIdA.items.some((i) => i.documentId === 'doc-a'));
});

test('keyboard only: a span added over a surrogate pair, an assertion toggled, a mouse selection undone; submitted', async () => {
  assert.equal(await page.$eval('#text', (el) => el.textContent), TEXT_B);
  await page.focus('#text');
  await page.keyboard.press('Home');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.down('Shift');
  await page.keyboard.press('ArrowRight');
  await page.keyboard.up('Shift');
  assert.equal(await page.$eval('#status', (el) => el.textContent), 'selected 𠮷', 'one press selects the whole pair');
  await page.keyboard.press('3');
  assert.deepEqual(await page.$$eval('#text mark', (els) => els.map((e) => e.getAttribute('aria-label'))), ['𠮷: BodyPart, added by you', '腹痛: Symptom, score 0.70', '糖尿病: Disease, score 0.88']);
  // Tab to 糖尿病 (the third entity) and mark it historical with h.
  await page.keyboard.press('Tab');
  await page.keyboard.press('Tab');
  assert.equal(await page.evaluate(() => document.activeElement?.textContent), '糖尿病');
  await page.keyboard.press('h');
  assert.equal(await page.$eval('#a-temporality', (el) => (el as unknown as { checked: boolean }).checked), true);
  assert.match(await page.evaluate(() => document.activeElement?.getAttribute('aria-label')), /糖尿病: Disease, score 0.88, present certain historical patient/);
  // A mouse selection of 有 (offset 7) mapped to its offsets, added with the button, then undone.
  await page.evaluate(() => {
    const cell = document.querySelector('#text span[data-start="7"]');
    const range = document.createRange();
    range.setStart(cell.firstChild, 0);
    range.setEnd(cell.firstChild, 1);
    const sel = window.getSelection();
    sel.removeAllRanges();
    sel.addRange(range);
    document.getElementById('text').dispatchEvent(new MouseEvent('mouseup', { bubbles: true }));
  });
  assert.equal(await page.$eval('#status', (el) => el.textContent), 'selected 有: press a digit or Add span');
  await page.click('#add');
  assert.deepEqual(await page.$$eval('#text mark', (els) => els.map((e) => e.textContent)), ['𠮷', '腹痛', '有', '糖尿病']);
  await page.click('#undo');
  assert.deepEqual(await page.$$eval('#text mark', (els) => els.map((e) => e.textContent)), ['𠮷', '腹痛', '糖尿病']);
  await page.focus('#text');
  await page.keyboard.down('Control');
  await page.keyboard.press('Enter');
  await page.keyboard.up('Control');
  const items = await feedback!.waitFor(2, 30_000);
  assert.equal(items.length, 2);
  assert.equal(items[1].key, 'doc-b');
  assert.deepEqual(plain(items[1].record.entities), [
    { start: 2, end: 4, text: '𠮷', type: 'BodyPart', assertion: null },
    { start: 4, end: 6, text: '腹痛', type: 'Symptom', assertion: null },
    { start: 8, end: 11, text: '糖尿病', type: 'Disease', assertion: { polarity: 'present', certainty: 'certain', temporality: 'historical', experiencer: 'patient' } },
  ]);
});

test('cross-site writes are refused: a page on another site posting with the cookie, a foreign Origin with a valid CSRF token', async () => {
  const { body } = await api('/api/queue');
  const target = body.items[0];
  assert.equal(target.documentId, 'doc-d');
  const submitUrl = `${review!.url}/api/items/${target.reviewId}/submit`;
  // Another site (localhost is another site than 127.0.0.1) whose script and form post to the page.
  attacker = createServer((_req, res) => {
    res.setHeader('content-type', 'text/html');
    res.end(`<!doctype html><form id="f" method="POST" action="${submitUrl}" enctype="text/plain"><input name='{"entities":[],"x":"' value='"}'></form>
<script>fetch(${JSON.stringify(submitUrl)}, { method: 'POST', mode: 'no-cors', credentials: 'include', headers: { 'content-type': 'text/plain' }, body: '{"entities":[]}' }).finally(() => { document.title = 'sent'; document.getElementById('f').submit(); });</script>`);
  });
  await new Promise<void>((r) => attacker!.listen(0, '127.0.0.1', () => r()));
  const port = (attacker.address() as { port: number }).port;
  const evil = await browser!.newPage();
  await evil.goto(`http://localhost:${port}/`);
  await new Promise((r) => setTimeout(r, 2000));
  await evil.close();

  // With the reviewer's real cookie and CSRF token but another Origin: refused by the server itself.
  const cookies = await browser!.cookies();
  const session = cookies.find((c) => c.name === 'rmbert_review_session');
  assert.ok(session, 'the browser holds a session');
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, 'Strict');
  const csrf = ((await page.evaluate(() => fetch('/api/session').then((r) => r.json()))) as { csrfToken: string }).csrfToken;
  const headers = { cookie: `rmbert_review_session=${session.value}`, 'x-csrf-token': csrf, 'content-type': 'application/json' };
  const foreign = await fetch(submitUrl, { method: 'POST', headers: { ...headers, origin: `http://localhost:${port}` }, body: JSON.stringify({ entities: [] }) });
  assert.equal(foreign.status, 403);
  const noCsrf = await fetch(submitUrl, { method: 'POST', headers: { cookie: headers.cookie, 'content-type': 'application/json' }, body: JSON.stringify({ entities: [] }) });
  assert.equal(noCsrf.status, 403);

  const after = await api('/api/queue');
  assert.equal(after.body.counts.waiting, 1, 'doc-d still waits');
  assert.equal(after.body.counts.reviewed, 2);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(feedback!.items.length, 2, 'no record from the cross-site attempts');
  for (const line of review!.lines) assert.ok(!line.includes('高血') && !line.includes('糖尿病') && !line.includes('PATIENT-0042'), `no text in the log: ${line}`);
});

test('the queue survives a restart; a repeated submission after it makes no second record', async () => {
  const stateDir = path.join(tmp.dir, 'state');
  assert.equal(await stopReview(), 0);
  review = await startReview(stateDir);
  const { body } = await api('/api/queue');
  assert.equal(body.counts.waiting, 1);
  assert.equal(body.counts.reviewed, 2);
  assert.equal(body.items[0].documentId, 'doc-d');
  const item = (await api(`/api/items/${body.items[0].reviewId}`)).body;
  assert.equal(item.text, TEXT_D);
  // A scripted reviewer (Bearer token, no CSRF needed): 恶心呕吐 is one symptom here.
  const entities = [{ start: 0, end: 4, type: 'Symptom' }];
  const first = await api(`/api/items/${body.items[0].reviewId}/submit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entities }) });
  assert.equal(first.status, 200, JSON.stringify(first.body));
  const again = await api(`/api/items/${body.items[0].reviewId}/submit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entities }) });
  assert.equal(again.status, 200);
  assert.equal(again.body.repeated, true);
  const other = await api(`/api/items/${body.items[0].reviewId}/submit`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ entities: [] }) });
  assert.equal(other.status, 409);
  await feedback!.waitFor(3, 30_000);
  await new Promise((r) => setTimeout(r, 1500));
  assert.equal(feedback!.items.length, 3);
  assert.deepEqual(plain(feedback!.items[2].record), { documentId: 'doc-d', text: TEXT_D, entities: [{ start: 0, end: 4, text: '恶心呕吐', type: 'Symptom', assertion: null }], annotator: REVIEWER, modelVersionSeen: MODEL, createdAt: feedback!.items[2].record.createdAt });
});

test("the trainer panel: the trainer's rounds as they happen (in progress, refused and why, promoted with its version), charted", async () => {
  const scores = (goldChallenger: number, holdoutChallenger: number) => ({
    gold: { champion: { f1: 0.9163 }, challenger: { f1: goldChallenger } },
    holdout: { champion: { f1: 0.2 }, challenger: { f1: holdoutChallenger }, sentences: 8 },
    distanceL1: 1,
    championL1: 100,
    trainSeconds: 60,
    replaySentences: 80,
  });
  trainerMetrics.store({ train: 32, holdout: 8, quarantined: 0, newSinceRound: 0 });
  trainerMetrics.ready({ storeOpen: true, consumerStarted: true, championFound: true });
  const panel = await browser!.newPage();
  await panel.setViewport({ width: 1000, height: 800 });
  // A Content-Security-Policy violation (an inline style or script) would show here.
  const errors: string[] = [];
  panel.on('pageerror', (e) => errors.push(String(e)));
  panel.on('console', (m) => {
    if (m.type() === 'error') errors.push(`${m.text()} ${m.location().url ?? ''}`);
  });
  // Sessions live in the process: after the restart above, the reviewer signs in again.
  await panel.goto(`${review!.url}/trainer`);
  assert.match(panel.url(), /\/login$/);
  await panel.focus('#token');
  await panel.keyboard.type(TOKEN);
  await panel.keyboard.press('Enter');
  await panel.waitForNavigation({ timeout: 30_000 });
  await panel.goto(`${review!.url}/trainer`);
  await panel.waitForSelector('body[data-ready="true"]', { timeout: 30_000 });
  assert.match(await panel.$eval('#in-service', (el) => el.textContent ?? ''), /no promotion yet/);
  const status = () => panel.$eval('#trainer-status', (el) => el.textContent ?? '');
  await waitFor('the trainer read', async () => /no round in progress/.test(await status()));

  trainerMetrics.roundStarted(Date.now());
  await waitFor('a round in progress', async () => /round in progress since/.test(await status()), 15_000);
  trainerMetrics.roundScores(scores(0.9012, 0.8), 40);
  trainerMetrics.round('refused', 66.6, ['gold']);
  await waitFor('the refused round', async () => (await panel.$$('#rounds tbody tr[data-outcome="refused"]')).length === 1, 15_000);

  // The next round is promoted: the trainer's commit puts its ModelUpdate on the topic.
  trainerMetrics.roundStarted(Date.now());
  trainerMetrics.roundScores(scores(0.9151, 0.95), 40);
  trainerMetrics.round('promoted', 67.2, []);
  const producer = await TestProducer.connect(kafka);
  const version = 'rmbert-medical-kg-crf-r2';
  await producer.raw(names.modelUpdates, [
    { key: version, value: codecs().modelUpdate.encode({ version, artifactLocation: '/models/r2', sha256: '0'.repeat(64), metrics: { goldF1: 0.9151, goldF1Champion: 0.9163, holdoutF1: 0.95, holdoutF1Champion: 0.2 }, createdAt: Date.now() }) },
  ]);
  await producer.close();
  await waitFor('the promoted round', async () => (await panel.$eval('#in-service', (el) => el.textContent ?? '')).includes(version), 30_000);
  await waitFor('two rows', async () => (await panel.$$('#rounds tbody tr')).length === 2, 15_000);
  const rows = await panel.$$eval('#rounds tbody tr', (trs) => trs.map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)));
  assert.deepEqual(rows.map((r) => r.slice(1)), [
    ['promoted', 'every check passed', version, '91.63', '91.51', '20.00', '95.00', '67.2'],
    ['refused', 'gold', '', '91.63', '90.12', '20.00', '80.00', '66.6'],
  ]);
  assert.equal((await panel.$$('#chart polyline')).length, 4, 'gold and holdout, champion and challenger');
  assert.match(await status(), /feedback stored: train 32, holdout 8/);
  assert.deepEqual(errors, []);
  if (process.env.RMBERT_REVIEW_PANEL_SCREENSHOT) await panel.screenshot({ path: process.env.RMBERT_REVIEW_PANEL_SCREENSHOT as `${string}.png`, fullPage: true });
  await panel.close();
});

test('a crash (SIGKILL) right after reading loses nothing: what was not yet on disk is read again', async () => {
  const createdAt = 1_700_000_000_400;
  const producer = await TestProducer.connect(kafka);
  await producer.documents(names.input, [{ id: 'doc-e', text: '胸闷气短。', createdAt, sourceSystem: 'test', patientRef: 'PATIENT-0042', language: 'zh', section: null }]);
  await producer.raw(names.output, [{ key: 'doc-e', value: codecs().entityAnnotations.encode(annotations('doc-e', createdAt, [[0, 2, '胸闷', 'Symptom', 0.5]])) }]);
  await producer.close();
  await waitFor('doc-e in the queue', async () => (await api('/api/queue')).body?.items.some((i: { documentId: string }) => i.documentId === 'doc-e'), 30_000);
  assert.equal(await stopReview('SIGKILL'), null);
  review = await startReview(path.join(tmp.dir, 'state'));
  const queue = await waitFor('doc-e again', async () => {
    const { body } = await api('/api/queue');
    return body?.items.some((i: { documentId: string }) => i.documentId === 'doc-e') && body;
  }, 30_000);
  assert.equal(queue.counts.waiting, 1, 'doc-e once');
  assert.equal(queue.counts.reviewed, 3, 'the reviews before the crash');
});
