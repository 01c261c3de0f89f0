import assert from 'node:assert/strict';
import { test } from 'node:test';
import { PromTrainerMetrics } from '../../../src/metrics/index.ts';

const f1 = (champion: number, challenger: number) => ({ champion: { f1: champion }, challenger: { f1: challenger } });

test('trainer metrics: rounds by outcome, refusals by check, the store, scores and the move; readiness from its checks', async () => {
  const m = new PromTrainerMetrics();
  assert.equal(m.readinessNow().ready, false);
  m.ready({ storeOpen: true, consumerStarted: false });
  assert.deepEqual(m.readinessNow(), { ready: false, checks: { storeOpen: true, consumerStarted: false } });
  m.ready({ storeOpen: true, consumerStarted: true });
  assert.equal(m.readinessNow().ready, true);
  m.feedback('stored', 3);
  m.feedback('quarantined');
  m.store({ train: 30, holdout: 8, quarantined: 40, newSinceRound: 5 });
  m.round('refused', 12.5, ['gold-type Cure', 'distance']);
  m.round('promoted', 66.6, []);
  m.roundScores({ gold: f1(0.919, 0.916), holdout: { ...f1(0.667, 0.963), sentences: 7 }, distanceL1: 44, championL1: 10_000, trainSeconds: 50, replaySentences: 66 }, 33);
  const text = await m.registry.metrics();
  for (const line of [
    'rmbert_trainer_rounds_total{outcome="refused"} 1',
    'rmbert_trainer_rounds_total{outcome="promoted"} 1',
    'rmbert_trainer_refusals_total{check="gold-type Cure"} 1',
    'rmbert_trainer_refusals_total{check="distance"} 1',
    'rmbert_trainer_feedback_records_total{outcome="stored"} 3',
    'rmbert_trainer_feedback_stored{state="quarantined"} 40',
    'rmbert_trainer_feedback_used_total 33',
    'rmbert_trainer_f1{set="holdout",model="challenger"} 0.963',
    'rmbert_trainer_relative_distance 0.0044',
    'rmbert_trainer_round_seconds_count 2',
    'rmbert_trainer_ready 1',
  ]) {
    assert.ok(text.includes(line), line);
  }
});
