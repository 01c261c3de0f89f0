/**
 * The trainer's loop against fake ports (no Kafka, no model) and a real feedback store in a temporary
 * directory: what is stored and committed when, what a round trains on, what survives.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { TransportError } from '../../../src/errors/index.ts';
import { segmentSentences } from '../../../src/pipeline/segment.ts';
import type { RoundInput, RoundResult } from '../../../src/train/continual.ts';
import type { FeedbackDocument } from '../../../src/train/feedback.ts';
import { FeedbackStore } from '../../../src/train/feedback-store.ts';
import { prf } from '../../../src/train/metrics.ts';
import { marginOnly } from '../../../src/train/promotion.ts';
import { TrainerSidecar } from '../../../src/train/sidecar.ts';
import type { FeedbackSource, IncomingFeedback, RoundCommit, SidecarSettings } from '../../../src/train/sidecar.ts';

type Raw = string;
const MODEL_DIR = '/nonexistent/models';
const TYPES = ['BodyPart', 'Symptom', 'Disease', 'Examine', 'Cure'];
const SECRET_TEXTS = ['患者头痛', '右膝肿胀', '咳嗽咳痰'];
const TMP = mkdtempSync(path.join(os.tmpdir(), 'trainer-sidecar-'));
let dirs = 0;
after(() => rmSync(TMP, { recursive: true, force: true }));

class FakeSource implements FeedbackSource<Raw> {
  deliver: ((records: IncomingFeedback<Raw>[]) => void) | null = null;
  pauses = 0;
  resumes = 0;
  stopped = false;
  constructor(private readonly initial: IncomingFeedback<Raw>[] = []) {}
  async start(deliver: (records: IncomingFeedback<Raw>[]) => void): Promise<void> {
    this.deliver = deliver;
    if (this.initial.length) deliver(this.initial);
  }
  pause(): void {
    this.pauses++;
  }
  resume(): void {
    this.resumes++;
  }
  async caughtUp(): Promise<boolean> {
    return true;
  }
  async stop(): Promise<void> {
    this.stopped = true;
  }
}

function feedback(offset: number, documentId: string, text: string, entities: [string, string][] = [], createdAt = 1000 + offset): IncomingFeedback<Raw> {
  const document: FeedbackDocument = {
    documentId,
    text,
    createdAt,
    entities: entities.map(([piece, type]) => {
      const start = text.indexOf(piece);
      return { start, end: start + piece.length, text: piece, type };
    }),
  };
  return { position: { partition: 0, offset: String(offset) }, raw: `raw-${offset}`, document };
}

/** Seven records: four usable documents (one corrected twice), one bad span, one undecodable. */
function records(): IncomingFeedback<Raw>[] {
  return [
    feedback(0, 'd1', '患者头痛三天。', [['头痛', 'Symptom']]),
    feedback(1, 'd2', '右膝肿胀。', [['右膝', 'BodyPart']]),
    feedback(2, 'd3', '咳嗽咳痰。', [['咳嗽', 'Symptom']]),
    feedback(3, 'd1', '患者头痛三天。', [['头痛', 'Symptom'], ['三天', 'Disease']]),
    { ...feedback(4, 'd4', '右膝肿胀。'), document: { documentId: 'd4', text: '右膝肿胀。', createdAt: 1, entities: [{ start: 3, end: 9, text: '胀。', type: 'Symptom' }] } },
    { position: { partition: 0, offset: '5' }, raw: 'raw-5', document: null, decodeError: 'Feedback: not an Avro single-object record (missing C3 01 header)' },
    feedback(6, 'd5', '发热。', [['发热', 'Symptom']]),
  ];
}

function result(input: RoundInput, gold: [number, number], holdout: [number, number] = [0, 0]): RoundResult {
  return {
    status: 'completed',
    champion: {
      dir: input.championDir,
      version: 'rmbert-medical+0123456789ab',
      config: { name: 'rmbert-medical', model: {} as never, labels: ['O'], vocabSha256: '0'.repeat(64), knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 64, enabled: true }, createdAt: new Date(0).toISOString() },
    },
    steps: 4,
    trainedExamples: 8,
    trainSentences: input.train.length,
    trainSeconds: 0.1,
    meanLoss: 1.5,
    distanceL1: 0.01,
    championL1: 100,
    replaySentences: input.replay?.length ?? 0,
    schedule: { k: 1, t0: 1, planned: 4 },
    goldTypes: {},
    goldSurfaces: [],
    gold: { champion: prf(gold[0], 10, 10), challenger: prf(gold[1], 10, 10), sentences: 10 },
    holdout: { champion: prf(holdout[0], 4, 4), challenger: prf(holdout[1], 4, 4), sentences: input.holdout.length },
    challenger: new Map(),
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 64, enabled: true },
  };
}

interface Harness {
  sidecar: TrainerSidecar<Raw>;
  store: FeedbackStore;
  stateDir: string;
  source: FakeSource;
  commits: { commit: RoundCommit<Raw>; retry: boolean }[];
  rounds: RoundInput[];
  written: string[];
  lines: string[];
  clock: { now: number };
}

function harness(
  opts: {
    records?: IncomingFeedback<Raw>[];
    gold?: [number, number];
    holdout?: [number, number];
    settings?: Partial<SidecarSettings>;
    runRound?: (input: RoundInput) => Promise<RoundResult>;
    commitFailures?: number;
    stateDir?: string;
    holdoutPercent?: number;
    labelCheck?: (d: FeedbackDocument) => string[];
  } = {},
): Harness {
  const stateDir = opts.stateDir ?? path.join(TMP, `state-${++dirs}`);
  const store = FeedbackStore.open(stateDir, { holdoutPercent: opts.holdoutPercent ?? 0 });
  const source = new FakeSource(opts.records ?? records());
  const commits: Harness['commits'] = [];
  const rounds: RoundInput[] = [];
  const written: string[] = [];
  const lines: string[] = [];
  const clock = { now: 10_000 };
  let failures = opts.commitFailures ?? 0;
  const logger = {
    debug: (msg: string, f?: Record<string, unknown>) => lines.push(JSON.stringify({ level: 'debug', msg, ...f })),
    info: (msg: string, f?: Record<string, unknown>) => lines.push(JSON.stringify({ level: 'info', msg, ...f })),
    warn: (msg: string, f?: Record<string, unknown>) => lines.push(JSON.stringify({ level: 'warn', msg, ...f })),
    error: (msg: string, f?: Record<string, unknown>) => lines.push(JSON.stringify({ level: 'error', msg, ...f })),
  };
  const sidecar = new TrainerSidecar<Raw>({
    source,
    store,
    ...(opts.labelCheck ? { labelCheck: opts.labelCheck } : {}),
    replay: [],
    committer: {
      async commit(commit, { retry }) {
        if (failures > 0) {
          failures--;
          throw new TransportError('broker unavailable');
        }
        commits.push({ commit, retry });
      },
    },
    champion: { latest: async () => ({ location: '/models/rmbert-medical' }) },
    championTypes: async () => TYPES,
    manifestSha256: async (dir) => `sha-of-${path.basename(dir)}`,
    trainer: {
      runRound: async (input) => {
        rounds.push(input);
        return opts.runRound ? opts.runRound(input) : result(input, opts.gold ?? [6, 7], opts.holdout ?? [0, 0]);
      },
      writeChallenger: async (_r, modelDir, name) => {
        written.push(name);
        return { dir: path.join(modelDir, name) } as never;
      },
    },
    segment: (text) => segmentSentences('', text),
    logger,
    now: () => clock.now,
    settings: {
      minExamples: 3,
      maxWaitMinutes: 0,
      maxBuffer: 1000,
      gate: marginOnly(0),
      replayRatio: 0,
      replayMax: 0,
      maxTextChars: 10_000,
      modelDir: MODEL_DIR,
      commitBackoffMs: { initial: 1, max: 2 },
      round: { learningRate: 1e-4, gamma: 100, anneal: 'sigmoid', k: 0.1, t0: 10, epochs: 1, maxSteps: 10, maxMinutes: 1, batchTokens: 256, batchSize: 4, seed: 1 },
      ...opts.settings,
    },
  });
  return { sidecar, store, stateDir, source, commits, rounds, written, lines, clock };
}

test('--once, promoted: feedback stored and its offsets and dead letters committed first, then a ModelUpdate alone', async () => {
  const h = harness({ gold: [6, 7] });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'promoted');
  assert.equal(h.rounds.length, 1);
  // d1 (latest correction), d2, d3, d5: four documents, one sentence each, in document-id order.
  const train = h.rounds[0].train;
  assert.deepEqual(
    train.map((s) => s.text),
    ['患者头痛三天。', '右膝肿胀。', '咳嗽咳痰。', '发热。'],
  );
  assert.deepEqual(train[0].labels, ['O', 'O', 'B-Symptom', 'I-Symptom', 'B-Disease', 'I-Disease', 'O']);
  assert.deepEqual(h.written, ['rmbert-medical-1.0.1']);
  assert.equal(h.commits.length, 2);
  const first = h.commits[0].commit;
  assert.deepEqual([...first.positions], [[0, 7n]]);
  assert.equal(first.update, null);
  assert.deepEqual(
    first.rejections.map((r) => [r.position.offset, r.errorClass, r.stage, r.raw]),
    [
      ['4', 'InvalidFeedbackError', 'validate', 'raw-4'],
      ['5', 'SchemaError', 'decode', 'raw-5'],
    ],
  );
  assert.match(first.rejections[0].message, /entity 1: span \[3, 9\) is not inside the text \(length 5\)/);
  const { commit } = h.commits[1];
  assert.equal(commit.positions.size, 0);
  assert.equal(commit.rejections.length, 0);
  assert.ok(commit.update);
  assert.equal(commit.update.version, 'rmbert-medical-1.0.1');
  assert.equal(commit.update.artifactLocation, path.join(MODEL_DIR, 'rmbert-medical-1.0.1'));
  assert.equal(commit.update.sha256, 'sha-of-rmbert-medical-1.0.1');
  assert.equal(commit.update.metrics.f1, 0.7);
  assert.equal(commit.update.metrics.goldF1Champion, 0.6);
  assert.equal(commit.update.metrics.trainSentences, 4);
  assert.equal(h.source.stopped, true);
  assert.deepEqual({ read: h.sidecar.counters.read, rejected: h.sidecar.counters.rejected, stored: h.sidecar.counters.stored, promoted: h.sidecar.counters.promoted }, { read: 7, rejected: 2, stored: 4, promoted: 1 });
  // The store knows which version learned the documents.
  assert.deepEqual(h.store.training().map((d) => [d.documentId, d.rounds, d.promotedIn]), [
    ['d1', 1, 'rmbert-medical-1.0.1'],
    ['d2', 1, 'rmbert-medical-1.0.1'],
    ['d3', 1, 'rmbert-medical-1.0.1'],
    ['d5', 1, 'rmbert-medical-1.0.1'],
  ]);
});

test('--once, refused: the reasons name the failed check with figures; the feedback stays in the store and the next round trains on it again', async () => {
  const h = harness({ gold: [7, 6] });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'refused');
  assert.ok(report.outcome === 'refused' && report.figures?.gold.champion === 0.7 && report.figures.gold.challenger === 0.6);
  assert.ok(report.outcome === 'refused' && report.failed.includes('gold'));
  assert.deepEqual(h.written, []);
  assert.equal(h.commits.length, 1);
  assert.equal(h.commits[0].commit.update, null);
  const refused = h.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'challenger refused');
  assert.match(refused.reasons[0], /gold: challenger F1 60\.00 < champion 70\.00/);
  // One new document later (min-examples 1 now), the round trains on the four refused ones plus it.
  const again = harness({ stateDir: h.stateDir, records: [feedback(7, 'd6', '咳嗽。', [['咳嗽', 'Symptom']])], settings: { minExamples: 1 } });
  const second = await again.sidecar.runOnce(1000);
  assert.equal(second.outcome, 'promoted');
  assert.equal(again.rounds[0].train.length, 5);
});

test('no log line carries document text, not even a quarantine', async () => {
  const h = harness({ labelCheck: (d) => (d.documentId === 'd2' ? ['"右膝" labelled BodyPart; the training set labels it Symptom 9'] : []) });
  await h.sidecar.runOnce(1000);
  const all = h.lines.join('\n');
  assert.ok(h.lines.length > 5);
  assert.ok(all.includes('feedback quarantined'));
  for (const t of [...SECRET_TEXTS, '右膝']) assert.ok(!all.includes(t), `log holds "${t}"`);
});

test('fewer new documents than --min-examples: no round, but the feedback is stored and committed', async () => {
  const h = harness({ settings: { minExamples: 5 } });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'skipped');
  assert.equal(h.rounds.length, 0);
  assert.equal(h.commits.length, 1);
  assert.equal(h.store.counts().train, 4);
  // A restart reads the store back: nothing is lost.
  const reopened = FeedbackStore.open(h.stateDir, { holdoutPercent: 0 });
  assert.deepEqual(reopened.training().map((d) => d.documentId), ['d1', 'd2', 'd3', 'd5']);
  assert.equal(reopened.counts().newAnySinceRound, 4);
});

test('a failed round keeps its feedback in the store for the next round', async () => {
  let calls = 0;
  const h = harness({
    runRound: async (input) => {
      calls++;
      if (calls === 1) throw new Error('out of memory');
      return result(input, [5, 5]);
    },
  });
  await h.sidecar.start();
  await h.sidecar.persist();
  const first = await h.sidecar.round('test');
  assert.equal(first.outcome, 'failed');
  assert.equal(h.store.counts().newSinceRound, 4);
  const second = await h.sidecar.round('test');
  assert.equal(second.outcome, 'promoted');
  assert.equal(h.rounds[1].train.length, 4);
});

test('quarantined documents are not trained on; a round with nothing else is refused by the label check', async () => {
  const h = harness({ labelCheck: () => ['contradiction'] });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'refused');
  assert.ok(report.outcome === 'refused' && report.failed[0] === 'label-check');
  assert.match(report.outcome === 'refused' ? report.reasons[0] : '', /^label-check: 4 new documents quarantined/);
  assert.equal(h.rounds.length, 0);
  assert.equal(h.store.counts().quarantined, 4);
});

test('an interrupted round records nothing', async () => {
  const h = harness({ runRound: async (input) => ({ ...result(input, [5, 9]), status: 'interrupted', challenger: null }) });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'interrupted');
  assert.equal(h.commits.length, 1);
  assert.deepEqual(h.written, []);
  assert.equal(h.store.rounds().length, 0);
});

test('a commit that fails on the broker is retried, telling the committer it is a retry', async () => {
  const h = harness({ commitFailures: 2 });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'promoted');
  assert.equal(h.commits.length, 2);
  assert.equal(h.commits[0].retry, true);
});

test('held-out documents are stratified by corrected term, scored, never trained on, and keep their side', async () => {
  // 40 documents, two terms: 20% of each term's documents held out, 4 + 4.
  const many = Array.from({ length: 40 }, (_, i) => (i % 2 ? feedback(i, `doc-${i}`, '患者头痛。', [['头痛', 'Symptom']]) : feedback(i, `doc-${i}`, '右膝肿胀。', [['右膝', 'BodyPart']])));
  const h = harness({ records: many, settings: { minExamples: 1 }, holdoutPercent: 20 });
  await h.sidecar.start();
  await h.sidecar.persist();
  const held = h.store.holdout();
  assert.equal(held.length, 8);
  assert.equal(held.filter((d) => d.entities[0].text === '头痛').length, 4);
  await h.sidecar.round('test');
  assert.equal(h.rounds[0].train.length, 32);
  assert.equal(h.rounds[0].holdout.length, 8);
  // A later correction of a held-out document stays held out.
  h.source.deliver!([feedback(40, held[0].documentId, '患者头痛加重。', [['头痛', 'Symptom']], 99_999)]);
  await h.sidecar.persist();
  assert.equal(h.store.get(held[0].documentId)!.split, 'holdout');
  assert.equal(h.store.holdout().length, 8);
});

test('continuous: the timer starts a round for fewer than --min-examples; feedback is stored as it comes', async () => {
  const h = harness({ records: [feedback(0, 'd1', '患者头痛。', [['头痛', 'Symptom']])], settings: { minExamples: 100, maxWaitMinutes: 1 } });
  const stop = new AbortController();
  const running = h.sidecar.run(stop.signal, 2);
  for (let i = 0; i < 100 && h.commits.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(h.rounds.length, 0);
  assert.equal(h.commits.length, 1);
  assert.equal(h.store.counts().train, 1);
  h.clock.now += 60_000;
  for (let i = 0; i < 100 && h.rounds.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(h.rounds.length, 1);
  stop.abort();
  await running;
  assert.equal(h.source.stopped, true);
});
