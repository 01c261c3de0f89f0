/**
 * The trainer panel's data: the trainer's real Prometheus metrics (PromTrainerMetrics, driven as the
 * sidecar drives them) read into rounds as they end (refused with the checks that refused them,
 * promoted matched to the model update of the same round, failed), a round in progress, the version
 * in service; a restarted trainer (counters back to zero) is a new baseline, not negative rounds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PromTrainerMetrics, type TrainerRoundScores } from '../../../src/metrics/trainer-metrics.ts';
import { parsePrometheus, TrainerPanel, trainerSnapshot } from '../../../src/review/trainer-panel.ts';

function scores(goldChampion: number, goldChallenger: number, holdoutChampion: number, holdoutChallenger: number): TrainerRoundScores {
  const pair = (champion: number, challenger: number) => ({ champion: { precision: 0, recall: 0, f1: champion }, challenger: { precision: 0, recall: 0, f1: challenger } });
  return { gold: pair(goldChampion, goldChallenger), holdout: { ...pair(holdoutChampion, holdoutChallenger), sentences: 10 }, distanceL1: 1, championL1: 100, trainSeconds: 60, replaySentences: 40 };
}

async function read(m: PromTrainerMetrics, at: number) {
  return trainerSnapshot(await m.registry.metrics(), at);
}

test('Prometheus text: labels (escaped quotes too), values, comments skipped', () => {
  const samples = parsePrometheus('# HELP x y\n# TYPE x counter\nx_total{outcome="refused",check="a \\"b\\""} 3\nplain 1.5e-1\n\nbad line\n');
  assert.deepEqual(samples, [
    { name: 'x_total', labels: { outcome: 'refused', check: 'a "b"' }, value: 3 },
    { name: 'plain', labels: {}, value: 0.15 },
  ]);
});

test('rounds as they happen: in progress, refused with why, promoted matched to its model update, failed', async () => {
  const m = new PromTrainerMetrics();
  const panel = new TrainerPanel('http://trainer/metrics');
  m.store({ train: 30, holdout: 8, quarantined: 2, newSinceRound: 0 });
  m.ready({ storeOpen: true, consumerStarted: true, championFound: true });
  panel.observe(await read(m, 1000));
  assert.deepEqual(panel.view().rounds, []);
  assert.equal(panel.view().inService, null);

  m.roundStarted(2_000_000);
  panel.observe(await read(m, 2000));
  assert.equal(panel.view().trainer.roundInProgressSince, 2_000_000);
  m.roundScores(scores(0.92, 0.9, 0.5, 0.7), 30);
  m.round('refused', 66.5, ['gold', 'gold-type Symptom']);
  panel.observe(await read(m, 3000));
  let v = panel.view();
  assert.equal(v.trainer.roundInProgressSince, null);
  assert.equal(v.rounds.length, 1);
  assert.deepEqual(v.rounds[0], { endedAt: 3000, outcome: 'refused', failed: ['gold', 'gold-type Symptom'], scores: { goldChampion: 0.92, goldChallenger: 0.9, holdoutChampion: 0.5, holdoutChallenger: 0.7 }, version: null, durationSeconds: 66.5 });

  m.roundStarted(4000);
  m.roundScores(scores(0.92, 0.919, 0.5, 0.9), 30);
  m.round('promoted', 70, []);
  panel.observe(await read(m, 5000));
  panel.addUpdate({ version: 'rmbert-medical-kg-crf-r2', createdAt: 4990, metrics: { goldF1: 0.919, goldF1Champion: 0.92, holdoutF1: 0.9, holdoutF1Champion: 0.5 } });
  m.round('failed', 3, []);
  panel.observe(await read(m, 6000));
  v = panel.view();
  assert.deepEqual(v.rounds.map((r) => [r.outcome, r.version, r.durationSeconds]), [['refused', null, 66.5], ['promoted', 'rmbert-medical-kg-crf-r2', 70], ['failed', null, 3]]);
  assert.deepEqual(v.rounds[1].scores, { goldChampion: 0.92, goldChallenger: 0.919, holdoutChampion: 0.5, holdoutChallenger: 0.9 });
  assert.deepEqual(v.rounds[2].scores, { goldChampion: null, goldChallenger: null, holdoutChampion: null, holdoutChallenger: null });
  assert.deepEqual(v.inService, { version: 'rmbert-medical-kg-crf-r2', since: 4990 });
  assert.deepEqual(v.trainer.stored, { train: 30, holdout: 8, quarantined: 2, new: 0 });
  assert.deepEqual(v.trainer.totals, { refused: 1, promoted: 1, failed: 1 });
  assert.equal(v.trainer.ready, true);

  // The trainer restarts: its counters start again from zero; nothing is made up.
  panel.observe(await read(new PromTrainerMetrics(), 7000));
  assert.equal(panel.view().rounds.length, 3);
  panel.pollFailed('cannot read', 8000);
  assert.equal(panel.view().trainer.reachable, false);
  assert.equal(panel.view().trainer.error, 'cannot read');
});

test('without the trainer\'s metrics, the promoted rounds from the topic alone, deduplicated, in time order', () => {
  const panel = new TrainerPanel(null);
  panel.addUpdate({ version: 'b', createdAt: 20, metrics: { f1: 0.9 } });
  panel.addUpdate({ version: 'a', createdAt: 10, metrics: { goldF1: 0.8, holdoutF1: 0.7 } });
  panel.addUpdate({ version: 'a', createdAt: 10, metrics: { goldF1: 0.8, holdoutF1: 0.7 } });
  const v = panel.view();
  assert.deepEqual(v.rounds.map((r) => [r.version, r.scores.goldChallenger, r.scores.holdoutChallenger]), [['a', 0.8, 0.7], ['b', 0.9, null]]);
  assert.equal(v.inService!.version, 'b');
  assert.equal(v.trainer.url, null);
});
