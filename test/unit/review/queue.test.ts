/**
 * The review queue: join of documents and (paged) entity records in either order and within the
 * bounded window, least-confident-first order with filters, the bounded queue, the submission states,
 * and a restart from disk.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { ReviewQueue, reviewIdOf, type IncomingAnnotations, type IncomingDocument, type ReviewEntity } from '../../../src/review/queue.ts';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));
function tmp(): string {
  const d = mkdtempSync(path.join(os.tmpdir(), 'rmbert-review-queue-'));
  dirs.push(d);
  return d;
}

const LIMITS = { maxQueue: 100, joinWindow: 100, maxReviewed: 100 };

function doc(id: string, text = '患者高血压3天', createdAt = 1000): IncomingDocument {
  return { id, sourceSystem: 'test', patientRef: 'P-1', text, createdAt, section: null };
}
function ent(start: number, end: number, type: string, score: number, text = ''): ReviewEntity {
  return { start, end, text, type, score, linked: [], assertion: null };
}
function ann(documentId: string, entities: ReviewEntity[], extra: Partial<IncomingAnnotations> = {}): IncomingAnnotations {
  return { documentId, documentCreatedAt: 1000, modelVersion: 'm1', kgVersion: 'kg1', annotatedAt: 2000, part: 0, parts: 1, entities, kgDegraded: false, ...extra };
}

test('joins a document with its entities whichever comes first, and all parts of a paged output', () => {
  const q = new ReviewQueue(tmp(), LIMITS);
  q.addDocument(doc('a'));
  assert.equal(q.list().length, 0);
  q.addAnnotations(ann('a', [ent(2, 4, 'Disease', 0.9)]));
  q.addAnnotations(ann('b', [ent(2, 5, 'Disease', 0.4)], { part: 1, parts: 2 }));
  q.addDocument(doc('b'));
  assert.deepEqual(q.list().map((w) => w.documentId), ['a'], 'b waits for its part 0');
  q.addAnnotations(ann('b', [ent(0, 2, 'BodyPart', 0.8)], { part: 0, parts: 2 }));
  const b = q.list().find((w) => w.documentId === 'b')!;
  assert.deepEqual(b.entities.map((e) => [e.start, e.type]), [[0, 'BodyPart'], [2, 'Disease']]);
  assert.equal(b.confidence, 0.4);
  assert.equal(b.text, '患者高血压3天');
  assert.equal(b.reviewId, reviewIdOf('b', 1000, 'm1', 2000));
  assert.deepEqual(q.counts(), { waiting: 2, reviewed: 0, dropped: 0, pendingDocuments: 0, pendingAnnotations: 0, unmatched: 0 });
});

test('a document re-sent under the same id with another createdAt never meets the other text\'s entities', () => {
  const q = new ReviewQueue(tmp(), LIMITS);
  q.addDocument(doc('a', 'other text', 999));
  q.addAnnotations(ann('a', [ent(2, 4, 'Disease', 0.9)]));
  assert.equal(q.list().length, 0);
  q.addDocument(doc('a'));
  assert.equal(q.list()[0].text, '患者高血压3天');
});

test('least confident first; filter by type and by model version; facets', () => {
  const q = new ReviewQueue(tmp(), LIMITS);
  const rows: [string, number, string, string][] = [['hi', 0.95, 'Disease', 'm1'], ['lo', 0.3, 'Symptom', 'm1'], ['mid', 0.6, 'Disease', 'm2']];
  for (const [id, score, type, mv] of rows) {
    q.addDocument(doc(id));
    q.addAnnotations(ann(id, [ent(0, 2, type, score)], { modelVersion: mv }));
  }
  q.addDocument(doc('none'));
  q.addAnnotations(ann('none', []));
  assert.deepEqual(q.list().map((w) => w.documentId), ['lo', 'mid', 'hi', 'none']);
  assert.deepEqual(q.list({ type: 'Disease' }).map((w) => w.documentId), ['mid', 'hi']);
  assert.deepEqual(q.list({ modelVersion: 'm1' }).map((w) => w.documentId), ['lo', 'hi', 'none']);
  assert.deepEqual(q.list({ type: 'Disease', modelVersion: 'm1' }).map((w) => w.documentId), ['hi']);
  assert.equal(q.counts({ type: 'Symptom' }).waiting, 1);
  assert.deepEqual(q.facets(), { modelVersions: ['m1', 'm2'], types: ['Disease', 'Symptom'] });
});

test('the queue and the join window are bounded: the most confident waiting document and the oldest half leave', () => {
  const q = new ReviewQueue(tmp(), { maxQueue: 2, joinWindow: 2, maxReviewed: 1 });
  for (const [id, score] of [['a', 0.5], ['b', 0.9], ['c', 0.2]] as const) {
    q.addDocument(doc(id));
    q.addAnnotations(ann(id, [ent(0, 2, 'Disease', score)]));
  }
  assert.deepEqual(q.list().map((w) => w.documentId), ['c', 'a']);
  for (const id of ['x', 'y', 'z']) q.addDocument(doc(id));
  const c = q.counts();
  assert.equal(c.dropped, 1);
  assert.equal(c.pendingDocuments, 2);
  assert.equal(c.unmatched, 1);
  q.addAnnotations(ann('x', [ent(0, 1, 'Disease', 0.1)]));
  assert.ok(!q.list().some((w) => w.documentId === 'x'), 'x fell out of the window');
});

test('a submission goes sending -> sent; the reviewed item keeps no text; all of it survives a restart', () => {
  const dir = tmp();
  const q = new ReviewQueue(dir, LIMITS);
  q.addDocument(doc('a'));
  q.addAnnotations(ann('a', [ent(2, 4, 'Disease', 0.5)]));
  q.addDocument(doc('b'));
  q.addAnnotations(ann('b', [ent(2, 5, 'Disease', 0.7)]));
  q.addDocument(doc('pending-doc'));
  const [a, b] = q.list();
  q.beginSubmission(a.reviewId, { reviewer: 'r1', entitiesSha256: 'h', createdAt: 5, entityCount: 1, state: 'sending', recordBase64: 'AAEC' });
  q.beginSubmission(b.reviewId, { reviewer: 'r1', entitiesSha256: 'h2', createdAt: 6, entityCount: 1, state: 'sending', recordBase64: 'AAED' });
  q.finishSubmission(b.reviewId);
  assert.equal((statSync(path.join(dir, 'review-queue.json')).mode & 0o777).toString(8), '600');

  const again = new ReviewQueue(dir, LIMITS);
  again.load();
  assert.deepEqual(again.sending().map((w) => w.reviewId), [a.reviewId]);
  assert.equal(again.get(a.reviewId)!.submission!.recordBase64, 'AAEC');
  assert.equal(again.get(b.reviewId), undefined);
  assert.equal(again.getReviewed(b.reviewId)!.submission.state, 'sent');
  assert.equal(again.getReviewed(b.reviewId)!.submission.recordBase64, null);
  assert.deepEqual(again.counts(), { waiting: 1, reviewed: 1, dropped: 0, pendingDocuments: 1, pendingAnnotations: 0, unmatched: 0 });
  // The same records read again after the restart (offsets not yet committed) change nothing.
  again.addDocument(doc('b'));
  again.addAnnotations(ann('b', [ent(2, 5, 'Disease', 0.7)]));
  assert.equal(again.counts().waiting, 1);
  again.save();
  const saved = readFileSync(path.join(dir, 'review-queue.json'), 'utf8');
  const reviewed = JSON.parse(saved).reviewed as unknown[];
  assert.ok(!JSON.stringify(reviewed).includes('高血压'), 'a reviewed document keeps no text on disk');
});

test('a newer annotation of a waiting document replaces it', () => {
  const q = new ReviewQueue(tmp(), LIMITS);
  q.addDocument(doc('a'));
  q.addAnnotations(ann('a', [ent(2, 4, 'Disease', 0.5)]));
  q.addDocument(doc('a'));
  q.addAnnotations(ann('a', [ent(2, 5, 'Disease', 0.9)], { modelVersion: 'm2', annotatedAt: 3000 }));
  assert.deepEqual(q.list().map((w) => [w.documentId, w.modelVersion]), [['a', 'm2']]);
});
