import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { buildTrainerConfig, defaultGoldFile, SHIPPED_GOLD_FILE, SHIPPED_LEXICON_FILE, SHIPPED_REPLAY_FILE, TRAINER_SETTINGS, trainerConfigHelp, trainerFlagClashes } from '../../../src/config/trainer.ts';
import { ConfigError } from '../../../src/errors/index.ts';
import { loadTrainerSetup } from '../../../src/cli/commands/train.ts';
import { readKbertTsv, MEDICAL_TYPES } from '../../../src/train/datasets.ts';

test('defaults: a round per 20 new documents, 20% of each term held out, at least as good on the holdout, gold within half a point, shipped gold and replay files', () => {
  const c = buildTrainerConfig({ env: {} });
  assert.equal(c.minExamples, 20);
  assert.equal(c.holdoutPercent, 20);
  assert.equal(c.gateMargin, 0);
  assert.equal(c.goldTolerance, 0.005);
  assert.equal(c.replayFile, SHIPPED_REPLAY_FILE);
  assert.equal(c.lexiconFile, SHIPPED_LEXICON_FILE);
  assert.equal(c.feedbackDlqTopic, 'emr.feedback.dlq');
  assert.equal(c.learningRate * c.gamma <= 1, true);
  // The shipped set whether or not ../shared/data is beside the checkout: the gate scores alike everywhere.
  assert.equal(c.goldFile, SHIPPED_GOLD_FILE);
  assert.equal(defaultGoldFile(), SHIPPED_GOLD_FILE);
  assert.ok(Object.isFrozen(c));
  assert.throws(() => {
    (c as { minExamples: number }).minExamples = 1;
  }, TypeError);
});

test('the shipped gold set reads as the medical types, 200 sentences', () => {
  const gold = readKbertTsv(SHIPPED_GOLD_FILE, { types: MEDICAL_TYPES });
  assert.equal(gold.stats.sentences, 200);
  assert.equal(gold.stats.totalEntities, 740);
});

test('environment, then flags, then overrides', () => {
  const c = buildTrainerConfig({
    env: { RMBERT_TRAINER_MIN_EXAMPLES: '7', RMBERT_TRAINER_GATE_MARGIN: '0.01', RMBERT_TRAINER_LR: '1e-4', RMBERT_TRAINER_ANNEAL: 'Linear' },
    flags: { 'min-examples': '9', 'holdout-percent': '20' },
    overrides: { gateMargin: -1 },
  });
  assert.equal(c.minExamples, 9);
  assert.equal(c.holdoutPercent, 20);
  assert.equal(c.gateMargin, -1);
  assert.equal(c.learningRate, 1e-4);
  assert.equal(c.anneal, 'linear');
});

test('a bad trainer configuration lists every problem', async () => {
  let error: unknown;
  try {
    buildTrainerConfig({
      env: {
        RMBERT_TRAINER_MIN_EXAMPLES: 'lots',
        RMBERT_TRAINER_HOLDOUT_PERCENT: '90',
        RMBERT_TRAINER_LR: '0.01',
        RMBERT_TRAINER_ANNEAL: 'cosine',
        RMBERT_TRAINER_GOLD_FILE: '/nonexistent/gold.tsv',
        RMBERT_TRAINER_GATE_MARGIN: '2',
      },
      overrides: { ['nope' as 'seed']: 1 },
    });
  } catch (e) {
    error = e;
  }
  assert.ok(error instanceof ConfigError);
  const text = error.problems.join('\n');
  for (const expected of [
    /trainer.minExamples \(RMBERT_TRAINER_MIN_EXAMPLES\): "lots" is not an integer/,
    /trainer.holdoutPercent .*: 90 is outside 0..50/,
    /trainer.anneal .*: "cosine" is not one of sigmoid, linear, constant/,
    /trainer.goldFile: \/nonexistent\/gold.tsv does not exist/,
    /trainer.gateMargin .*: 2 is outside -1..1/,
    /learningRate x trainer.gamma = 10 > 1/,
    /trainer.nope: unknown setting/,
  ]) {
    assert.match(text, expected);
  }
});

test('trainer flags do not clash with the stage flags; the help lists every setting with its variable', () => {
  assert.deepEqual(trainerFlagClashes(), []);
  const help = trainerConfigHelp();
  for (const s of TRAINER_SETTINGS) {
    assert.ok(help.includes(`--${s.flag}`) && help.includes(s.env), s.flag);
    assert.ok(s.env.startsWith('RMBERT_TRAINER_'), s.env);
  }
});

test("rmbert train's setup: its own group by default, never the stage's; a model directory of versions", async () => {
  const dir = await mkdtemp(path.join(os.tmpdir(), 'trainer-setup-'));
  const saved = { ...process.env };
  try {
    for (const k of Object.keys(process.env)) if (k.startsWith('RMBERT_')) delete process.env[k];
    const setup = loadTrainerSetup({ 'model-dir': dir });
    assert.equal(setup.config.groupId, 'rmbert-trainer');
    assert.equal(setup.config.embedded, true);
    assert.equal(setup.trainer.minExamples, 20);
    // Its own metrics port, so it can run beside a stage on its default 9464.
    assert.equal(setup.config.metrics.port, 9465);
    assert.throws(() => loadTrainerSetup({ 'model-dir': dir, 'group-id': 'rmbert-stage' }), /the stage's consumer group/);
    await writeFile(path.join(dir, 'manifest.json'), '{}');
    assert.throws(() => loadTrainerSetup({ 'model-dir': dir, 'min-examples': '0' }), (e: unknown) => {
      assert.ok(e instanceof ConfigError);
      assert.match(e.message, /is itself a model artifact/);
      assert.match(e.message, /trainer.minExamples \(--min-examples\): 0 is outside 1/);
      return true;
    });
  } finally {
    process.env = saved;
    await rm(dir, { recursive: true, force: true });
  }
});
