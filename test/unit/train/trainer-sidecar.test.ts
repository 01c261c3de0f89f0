/**
 * The trainer's loop against fake ports (no Kafka, no model): what is committed when, and what is not.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { TransportError } from '../../../src/errors/index.ts';
import { segmentSentences } from '../../../src/pipeline/segment.ts';
import type { RoundInput, RoundResult } from '../../../src/train/continual.ts';
import { isHeldOut } from '../../../src/train/feedback.ts';
import type { FeedbackDocument } from '../../../src/train/feedback.ts';
import { prf } from '../../../src/train/metrics.ts';
import { TrainerSidecar } from '../../../src/train/sidecar.ts';
import type { FeedbackSource, IncomingFeedback, RoundCommit, SidecarSettings } from '../../../src/train/sidecar.ts';

type Raw = string;
const MODEL_DIR = '/nonexistent/models';
const TYPES = ['BodyPart', 'Symptom', 'Disease', 'Examine', 'Cure'];
const SECRET_TEXTS = ['患者头痛', '右膝肿胀', '咳嗽咳痰'];

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
    gold: { champion: prf(gold[0], 10, 10), challenger: prf(gold[1], 10, 10), sentences: 10 },
    holdout: { champion: prf(holdout[0], 4, 4), challenger: prf(holdout[1], 4, 4), sentences: input.holdout.length },
    challenger: new Map(),
    knowledge: { inject: 'relation+object', maxEntities: 2, maxLength: 64, enabled: true },
  };
}

interface Harness {
  sidecar: TrainerSidecar<Raw>;
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
  } = {},
): Harness {
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
      holdoutPercent: 0,
      holdoutMax: 100,
      gateMargin: 0,
      maxTextChars: 10_000,
      modelDir: MODEL_DIR,
      commitBackoffMs: { initial: 1, max: 2 },
      round: { learningRate: 1e-4, gamma: 100, anneal: 'sigmoid', k: 0.1, t0: 10, epochs: 1, maxSteps: 10, maxMinutes: 1, batchTokens: 256, batchSize: 4, seed: 1 },
      ...opts.settings,
    },
  });
  return { sidecar, source, commits, rounds, written, lines, clock };
}

test('--once, promoted: one commit with the dead letters, the ModelUpdate and the positions after every record read', async () => {
  const h = harness({ gold: [6, 7] });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'promoted');
  assert.equal(h.rounds.length, 1);
  // d1 (latest correction), d2, d3, d5: four documents, one sentence each; the corrected d1 has both entities.
  const train = h.rounds[0].train;
  assert.equal(train.length, 4);
  assert.deepEqual(train.find((s) => s.text === '患者头痛三天。')!.labels, ['O', 'O', 'B-Symptom', 'I-Symptom', 'B-Disease', 'I-Disease', 'O']);
  assert.deepEqual(h.written, ['rmbert-medical-1.0.1']);
  assert.equal(h.commits.length, 1);
  const { commit, retry } = h.commits[0];
  assert.equal(retry, false);
  assert.deepEqual([...commit.positions], [[0, 7n]]);
  assert.deepEqual(
    commit.rejections.map((r) => [r.position.offset, r.errorClass, r.stage, r.raw]),
    [
      ['4', 'InvalidFeedbackError', 'validate', 'raw-4'],
      ['5', 'SchemaError', 'decode', 'raw-5'],
    ],
  );
  assert.match(commit.rejections[0].message, /entity 1: span \[3, 9\) is not inside the text \(length 5\)/);
  assert.ok(commit.update);
  assert.equal(commit.update.version, 'rmbert-medical-1.0.1');
  assert.equal(commit.update.artifactLocation, path.join(MODEL_DIR, 'rmbert-medical-1.0.1'));
  assert.equal(commit.update.sha256, 'sha-of-rmbert-medical-1.0.1');
  assert.equal(commit.update.createdAt, 10_000);
  assert.equal(commit.update.metrics.f1, 0.7);
  assert.equal(commit.update.metrics.goldF1Champion, 0.6);
  assert.equal(commit.update.metrics.trainSentences, 4);
  assert.equal(h.source.stopped, true);
  assert.deepEqual({ read: h.sidecar.counters.read, rejected: h.sidecar.counters.rejected, superseded: h.sidecar.counters.superseded, promoted: h.sidecar.counters.promoted }, { read: 7, rejected: 2, superseded: 1, promoted: 1 });
});

test('--once, refused: the figures are logged, the feedback and dead letters committed, no ModelUpdate, nothing written', async () => {
  const h = harness({ gold: [7, 6] });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'refused');
  assert.ok(report.outcome === 'refused' && report.figures.gold.champion === 0.7 && report.figures.gold.challenger === 0.6);
  assert.deepEqual(h.written, []);
  assert.equal(h.commits.length, 1);
  assert.equal(h.commits[0].commit.update, null);
  assert.equal(h.commits[0].commit.rejections.length, 2);
  assert.deepEqual([...h.commits[0].commit.positions], [[0, 7n]]);
  const refused = h.lines.map((l) => JSON.parse(l)).find((l) => l.msg === 'challenger refused');
  assert.ok(refused);
  assert.deepEqual(refused.figures.gold, { champion: 0.7, challenger: 0.6, sentences: 10 });
  assert.match(refused.reasons[0], /gold: challenger F1 60\.00 < champion 70\.00/);
});

test('no log line carries document text', async () => {
  const h = harness();
  await h.sidecar.runOnce(1000);
  const all = h.lines.join('\n');
  assert.ok(h.lines.length > 5);
  for (const t of SECRET_TEXTS) assert.ok(!all.includes(t), `log holds "${t}"`);
});

test('fewer documents than --min-examples: no round and nothing committed', async () => {
  const h = harness({ settings: { minExamples: 5 } });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'skipped');
  assert.equal(h.rounds.length, 0);
  assert.equal(h.commits.length, 0);
});

test('a failed round commits nothing and keeps its feedback for the next round', async () => {
  let calls = 0;
  const h = harness({
    runRound: async (input) => {
      calls++;
      if (calls === 1) throw new Error('out of memory');
      return result(input, [5, 5]);
    },
  });
  await h.sidecar.start();
  const first = await h.sidecar.round('test');
  assert.equal(first.outcome, 'failed');
  assert.equal(h.commits.length, 0);
  assert.deepEqual(h.sidecar.buffered, { training: 4, heldOut: 0, rejected: 2 });
  const second = await h.sidecar.round('test');
  assert.equal(second.outcome, 'promoted');
  assert.equal(h.rounds[1].train.length, 4);
  assert.equal(h.commits.length, 1);
  assert.deepEqual([...h.commits[0].commit.positions], [[0, 7n]]);
});

test('an interrupted round commits nothing', async () => {
  const h = harness({ runRound: async (input) => ({ ...result(input, [5, 9]), status: 'interrupted', challenger: null }) });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'interrupted');
  assert.equal(h.commits.length, 0);
  assert.deepEqual(h.written, []);
});

test('a commit that fails on the broker is retried, telling the committer it is a retry', async () => {
  const h = harness({ commitFailures: 2 });
  const report = await h.sidecar.runOnce(1000);
  assert.equal(report.outcome, 'promoted');
  assert.equal(h.commits.length, 1);
  assert.equal(h.commits[0].retry, true);
});

test('held-out documents are scored, never trained on, and stay in the holdout across rounds', async () => {
  // 50%: about half of 40 documents held out.
  const many = Array.from({ length: 40 }, (_, i) => feedback(i, `doc-${i}`, '患者头痛。', [['头痛', 'Symptom']]));
  const h = harness({ records: many, settings: { holdoutPercent: 50, minExamples: 1 } });
  await h.sidecar.start();
  const { training, heldOut } = h.sidecar.buffered;
  assert.equal(training + heldOut, 40);
  assert.ok(heldOut > 5 && training > 5, `${heldOut} held out`);
  await h.sidecar.round('test');
  assert.equal(h.rounds[0].train.length, training);
  assert.equal(h.rounds[0].holdout.length, heldOut);
  // A second round with one new document still scores on the earlier holdout.
  const fresh = ['new-1', 'new-2', 'new-3', 'new-4'].find((id) => !isHeldOut(id, 50))!;
  h.source.deliver!([feedback(40, fresh, '右膝肿胀。', [['右膝', 'BodyPart']])]);
  await h.sidecar.round('test');
  assert.equal(h.rounds[1].train.length, 1);
  assert.equal(h.rounds[1].holdout.length, heldOut);
});

test('continuous: the timer starts a round for fewer than --min-examples; a full buffer pauses reading until the round', async () => {
  const h = harness({ records: [feedback(0, 'd1', '患者头痛。', [['头痛', 'Symptom']])], settings: { minExamples: 100, maxWaitMinutes: 1, maxBuffer: 3 } });
  const stop = new AbortController();
  const running = h.sidecar.run(stop.signal, 2);
  await new Promise((r) => setTimeout(r, 20));
  assert.equal(h.rounds.length, 0);
  h.clock.now += 60_000;
  for (let i = 0; i < 100 && h.rounds.length === 0; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(h.rounds.length, 1);
  assert.equal(h.commits.length, 1);
  // Three more records fill the buffer: reading pauses, a round runs at once, reading resumes.
  h.source.deliver!([feedback(1, 'a', '发热。', [['发热', 'Symptom']]), feedback(2, 'b', '咳嗽。'), feedback(3, 'c', '头痛。')]);
  assert.equal(h.source.pauses, 1);
  for (let i = 0; i < 100 && h.rounds.length === 1; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(h.rounds.length, 2);
  assert.equal(h.source.resumes, 1);
  stop.abort();
  await running;
  assert.equal(h.source.stopped, true);
});
