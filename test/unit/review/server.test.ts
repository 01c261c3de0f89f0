/**
 * The review server's rules, through Fastify's inject (no socket, no Kafka: the Feedback port records
 * what would be sent; the browser test in test/integration/review does it all on the real Kafka):
 * authentication, CSRF and cross-site refusal, security headers, the idempotent submission, the
 * patient reference hidden unless configured, and no document text in the log.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { buildReviewConfig, sha256Hex, type ReviewConfig } from '../../../src/config/review.ts';
import { TransportError } from '../../../src/errors/index.ts';
import { createJsonLogger } from '../../../src/pipeline/logging.ts';
import { ReviewQueue } from '../../../src/review/queue.ts';
import { CONTENT_SECURITY_POLICY, createReviewServer, type FeedbackOut, type FeedbackPort } from '../../../src/review/server.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

const TOKEN = 'reviewer-one-token-0123456789';
const TEXT = '否认高血压，头昏3天';

class RecordingPort implements FeedbackPort {
  sent: { documentId: string; value: Buffer; reviewId: string }[] = [];
  failNext = 0;
  encode(record: FeedbackOut): Buffer {
    return Buffer.from(JSON.stringify(record));
  }
  async send(documentId: string, value: Buffer, reviewId: string): Promise<void> {
    await new Promise((r) => setTimeout(r, 20));
    if (this.failNext > 0) {
      this.failNext--;
      throw new TransportError('broker down');
    }
    this.sent.push({ documentId, value, reviewId });
  }
}

function setup(overrides: Record<string, string | boolean> = {}) {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rmbert-review-server-'));
  dirs.push(dir);
  const base: ReviewConfig = buildReviewConfig({ overrides: { proxyUserHeader: 'x-test-user', stateDir: dir, ...overrides } });
  const config: ReviewConfig = { ...base, reviewers: [{ reviewer: 'r-one', tokenSha256: sha256Hex(TOKEN) }] };
  const queue = new ReviewQueue(dir, { maxQueue: 10, joinWindow: 10, maxReviewed: 10 });
  queue.addDocument({ id: 'doc-1', sourceSystem: 's', patientRef: 'PATIENT-42', text: TEXT, createdAt: 1, section: null });
  queue.addAnnotations({
    documentId: 'doc-1', documentCreatedAt: 1, modelVersion: 'm1', kgVersion: 'kg', annotatedAt: 2, part: 0, parts: 1, kgDegraded: false,
    entities: [{ start: 2, end: 4, text: '高血', type: 'Disease', score: 0.55, linked: [{ relation: '类别', object: '疾病' }], assertion: null }],
  });
  const logs: string[] = [];
  const port = new RecordingPort();
  const server = createReviewServer({ config, queue, feedback: port, logger: createJsonLogger({ level: 'debug', sink: (l) => logs.push(l) }), now: () => 1234 });
  const reviewId = queue.list()[0].reviewId;
  return { server, app: server.app, port, logs, reviewId, queue };
}

async function signIn(app: ReturnType<typeof setup>['app']) {
  const res = await app.inject({ method: 'POST', url: '/api/login', payload: { token: TOKEN }, headers: { origin: 'http://localhost:80', host: 'localhost:80' } });
  assert.equal(res.statusCode, 200, res.body);
  const cookie = res.cookies.find((c) => c.name === 'rmbert_review_session')!;
  assert.equal(cookie.httpOnly, true);
  assert.equal(cookie.sameSite, 'Strict');
  const session = await app.inject({ method: 'GET', url: '/api/session', cookies: { rmbert_review_session: cookie.value } });
  return { cookie: cookie.value, csrf: (session.json() as { csrfToken: string }).csrfToken };
}

const FIXED = [{ start: 2, end: 5, type: 'Disease' }, { start: 6, end: 8, type: 'Symptom' }];

test('every route but sign-in needs a reviewer; pages redirect, the API answers 401; headers are strict', async () => {
  const { app } = setup();
  for (const url of ['/api/queue', '/api/session', '/app.js']) {
    const res = await app.inject({ method: 'GET', url: url });
    assert.equal(res.statusCode, url.startsWith('/api') ? 401 : 303, url);
  }
  assert.equal((await app.inject({ method: 'GET', url: '/' })).headers.location, '/login');
  const login = await app.inject({ method: 'GET', url: '/login' });
  assert.equal(login.statusCode, 200);
  assert.equal(login.headers['content-security-policy'], CONTENT_SECURITY_POLICY);
  assert.match(CONTENT_SECURITY_POLICY, /script-src 'self'/);
  assert.doesNotMatch(CONTENT_SECURITY_POLICY, /unsafe-inline/);
  assert.equal(login.headers['x-frame-options'], 'DENY');
  assert.doesNotMatch(login.body, /<script>[^<]/, 'no inline script');
  assert.equal((await app.inject({ method: 'POST', url: '/api/login', payload: { token: 'wrong-token-wrong-token' } })).statusCode, 401);
  assert.equal((await app.inject({ method: 'GET', url: '/api/queue', headers: { authorization: 'Bearer nope' } })).statusCode, 401);
  assert.equal((await app.inject({ method: 'GET', url: '/api/queue', headers: { authorization: `Bearer ${TOKEN}` } })).statusCode, 200);
});

test('browser writes need the CSRF token and are refused cross-site', async () => {
  const { app, reviewId, port } = setup();
  const { cookie, csrf } = await signIn(app);
  const url = `/api/items/${reviewId}/submit`;
  const payload = { entities: FIXED };
  const noToken = await app.inject({ method: 'POST', url, payload, cookies: { rmbert_review_session: cookie } });
  assert.equal(noToken.statusCode, 403);
  const wrong = await app.inject({ method: 'POST', url, payload, cookies: { rmbert_review_session: cookie }, headers: { 'x-csrf-token': 'x' } });
  assert.equal(wrong.statusCode, 403);
  const foreign = await app.inject({ method: 'POST', url, payload, cookies: { rmbert_review_session: cookie }, headers: { 'x-csrf-token': csrf, origin: 'https://evil.example', host: 'localhost:80' } });
  assert.equal(foreign.statusCode, 403);
  const site = await app.inject({ method: 'POST', url, payload, cookies: { rmbert_review_session: cookie }, headers: { 'x-csrf-token': csrf, 'sec-fetch-site': 'cross-site' } });
  assert.equal(site.statusCode, 403);
  const crossLogin = await app.inject({ method: 'POST', url: '/api/login', payload: { token: TOKEN }, headers: { origin: 'https://evil.example' } });
  assert.equal(crossLogin.statusCode, 403);
  assert.equal(port.sent.length, 0);
  const ok = await app.inject({ method: 'POST', url, payload, cookies: { rmbert_review_session: cookie }, headers: { 'x-csrf-token': csrf, origin: 'http://localhost:80', host: 'localhost:80', 'sec-fetch-site': 'same-origin' } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal(port.sent.length, 1);
});

test('a review makes one record: a double click, a retry and a resubmission never make a second, different one', async () => {
  const { app, reviewId, port, queue } = setup();
  const headers = { authorization: `Bearer ${TOKEN}` };
  const url = `/api/items/${reviewId}/submit`;
  const [a, b] = await Promise.all([
    app.inject({ method: 'POST', url, payload: { entities: FIXED }, headers }),
    app.inject({ method: 'POST', url, payload: { entities: [...FIXED].reverse() }, headers }),
  ]);
  assert.equal(a.statusCode, 200, a.body);
  assert.equal(b.statusCode, 200, b.body);
  assert.equal(a.json().repeated, false);
  assert.equal(b.json().repeated, true);
  assert.equal(port.sent.length, 1);
  const record = JSON.parse(port.sent[0].value.toString()) as FeedbackOut;
  assert.deepEqual(record, {
    documentId: 'doc-1',
    text: TEXT,
    entities: [{ start: 2, end: 5, text: '高血压', type: 'Disease', assertion: null }, { start: 6, end: 8, text: '头昏', type: 'Symptom', assertion: null }],
    annotator: 'r-one',
    modelVersionSeen: 'm1',
    createdAt: 1234,
  });
  assert.equal(port.sent[0].reviewId, reviewId);
  const other = await app.inject({ method: 'POST', url, payload: { entities: [FIXED[0]] }, headers });
  assert.equal(other.statusCode, 409);
  assert.equal(port.sent.length, 1);
  assert.equal((await app.inject({ method: 'GET', url: `/api/items/${reviewId}`, headers })).statusCode, 410);
  assert.deepEqual(queue.counts().reviewed, 1);
});

test('a send that fails is answered 503 and resent with the same bytes, by a retry or at start', async () => {
  const { server, app, reviewId, port } = setup();
  const headers = { authorization: `Bearer ${TOKEN}` };
  const url = `/api/items/${reviewId}/submit`;
  port.failNext = 1;
  const first = await app.inject({ method: 'POST', url, payload: { entities: FIXED }, headers });
  assert.equal(first.statusCode, 503);
  assert.equal(first.json().retriable, true);
  assert.equal(port.sent.length, 0);
  assert.equal(await server.resendPending(), 1);
  assert.equal(port.sent.length, 1);
  const retry = await app.inject({ method: 'POST', url, payload: { entities: FIXED }, headers });
  assert.equal(retry.statusCode, 200);
  assert.equal(retry.json().repeated, true);
  assert.equal(port.sent.length, 1);
});

test('invalid lists are refused with the problems; the patient reference is hidden unless configured; logs carry no text', async () => {
  const { app, reviewId, logs } = setup();
  const headers = { authorization: `Bearer ${TOKEN}` };
  const bad = await app.inject({ method: 'POST', url: `/api/items/${reviewId}/submit`, payload: { entities: [{ start: 2, end: 5, type: 'Disease' }, { start: 4, end: 6, type: 'Nope' }] }, headers });
  assert.equal(bad.statusCode, 400);
  assert.match(bad.json().problems.join(), /overlap/);
  assert.match(bad.json().problems.join(), /type is not one of/);
  const item = (await app.inject({ method: 'GET', url: `/api/items/${reviewId}`, headers })).json();
  assert.equal(item.text, TEXT);
  assert.equal('patientRef' in item, false);
  await app.inject({ method: 'POST', url: `/api/items/${reviewId}/submit`, payload: { entities: FIXED }, headers });
  assert.ok(logs.length >= 3);
  for (const line of logs) {
    assert.ok(!line.includes('高血') && !line.includes('头昏') && !line.includes('PATIENT-42'), line);
  }
  const shown = setup({ showPatientRef: true });
  const item2 = (await shown.app.inject({ method: 'GET', url: `/api/items/${shown.reviewId}`, headers })).json();
  assert.equal(item2.patientRef, 'PATIENT-42');
});

test('an authenticating proxy\'s header names a pseudonymous reviewer; its browser writes need the CSRF token too', async () => {
  const { app, reviewId, port } = setup();
  const headers = { 'x-test-user': 'dr.wang@hospital.example' };
  const session = (await app.inject({ method: 'GET', url: '/api/session', headers })).json();
  assert.match(session.reviewer, /^proxy-[0-9a-f]{16}$/);
  const url = `/api/items/${reviewId}/submit`;
  assert.equal((await app.inject({ method: 'POST', url, payload: { entities: FIXED }, headers })).statusCode, 403);
  const ok = await app.inject({ method: 'POST', url, payload: { entities: FIXED }, headers: { ...headers, 'x-csrf-token': session.csrfToken } });
  assert.equal(ok.statusCode, 200, ok.body);
  assert.equal((JSON.parse(port.sent[0].value.toString()) as FeedbackOut).annotator, session.reviewer);
});

test("the reviewer's assertion of an entity is carried (Feedback v2), is part of what makes a review the same, and is checked", async () => {
  const { app, reviewId, port } = setup();
  const headers = { authorization: `Bearer ${TOKEN}` };
  const url = `/api/items/${reviewId}/submit`;
  const negated = { polarity: 'absent', certainty: 'certain', temporality: 'current', experiencer: 'patient' };
  const bad = await app.inject({ method: 'POST', url, payload: { entities: [{ ...FIXED[0], assertion: { ...negated, polarity: 'maybe' } }] }, headers });
  assert.equal(bad.statusCode, 400);
  assert.match(bad.json().problems.join(), /assertion.polarity must be one of present, absent/);
  const ok = await app.inject({ method: 'POST', url, payload: { entities: [{ ...FIXED[0], assertion: { ...negated, triggers: [{ start: 0, end: 2 }] } }, FIXED[1]] }, headers });
  assert.equal(ok.statusCode, 200, ok.body);
  const record = JSON.parse(port.sent[0].value.toString()) as FeedbackOut;
  assert.deepEqual(record.entities.map((e) => e.assertion), [negated, null]);
  const otherAssertion = await app.inject({ method: 'POST', url, payload: { entities: [{ ...FIXED[0], assertion: { ...negated, polarity: 'present' } }, FIXED[1]] }, headers });
  assert.equal(otherAssertion.statusCode, 409);
});

test('the queue API: least confident first, filters by type and model version, progress counts, no text in the list', async () => {
  const { app, queue } = setup();
  queue.addDocument({ id: 'doc-2', sourceSystem: 's', patientRef: 'P', text: '腹痛3天', createdAt: 1, section: null });
  queue.addAnnotations({ documentId: 'doc-2', documentCreatedAt: 1, modelVersion: 'm2', kgVersion: 'kg', annotatedAt: 3, part: 0, parts: 1, kgDegraded: false, entities: [{ start: 0, end: 2, text: '腹痛', type: 'Symptom', score: 0.3, linked: [], assertion: null }] });
  const headers = { authorization: `Bearer ${TOKEN}` };
  const all = (await app.inject({ method: 'GET', url: '/api/queue', headers })).json();
  assert.deepEqual(all.items.map((i: { documentId: string }) => i.documentId), ['doc-2', 'doc-1']);
  assert.equal(all.counts.waiting, 2);
  assert.deepEqual(all.facets.modelVersions, ['m1', 'm2']);
  assert.ok(!JSON.stringify(all).includes('高血') && !JSON.stringify(all).includes('腹痛'), 'the list carries no text');
  const disease = (await app.inject({ method: 'GET', url: '/api/queue?type=Disease', headers })).json();
  assert.deepEqual(disease.items.map((i: { documentId: string }) => i.documentId), ['doc-1']);
  const m2 = (await app.inject({ method: 'GET', url: '/api/queue?modelVersion=m2', headers })).json();
  assert.deepEqual(m2.items.map((i: { documentId: string }) => i.documentId), ['doc-2']);
  assert.equal(m2.counts.waiting, 1);
});
