import { test } from 'node:test';
import assert from 'node:assert/strict';
import { defaultExperimentSettings, experimentCommand, experimentRuns, loadReusableRuns, summarize } from '../../../src/train/experiments/index.ts';
import type { RunResult, RunSpec } from '../../../src/train/experiments/index.ts';
import { prf } from '../../../src/train/metrics.ts';
import type { NerEvaluation } from '../../../src/train/metrics.ts';

const settings = { ...defaultExperimentSettings('/repo'), seeds: [1, 2] };

test('experiments share runs: ablation reuses table 3 runs, fig. 7 reuses the paper-k run', () => {
  const medical = experimentRuns('medical', settings).map((r) => `${r.corpus}/${r.id}`);
  assert.deepEqual(medical, ['medical/bert-s1', 'medical/bert-s2', 'medical/kbert-s1', 'medical/kbert-s2', 'medical/rmbert-s1', 'medical/rmbert-s2']);
  const ablation = experimentRuns('ablation', settings).map((r) => `${r.corpus}/${r.id}`);
  assert.equal(ablation.length, 20);
  for (const id of ['medical/rmbert-s1', 'medical/kbert-s2', 'msra/rmbert-s1']) assert.ok(ablation.includes(id), id);
  const fig7 = experimentRuns('recall-distance', settings);
  assert.ok(fig7.some((r) => r.id === 'rmbert-s1' && r.k === 0.01), 'k = 0.01, t0 = 1000 is the medical RM-BERT run');
  assert.ok(fig7.some((r) => r.id === 'rmbert-s1-k0.1-t1000'));
  const fig8 = experimentRuns('entity-deletion', settings);
  assert.equal(fig8.length, 18, '40 % to 90 % of BodyPart removed, as the paper, x 3 methods');
  assert.ok(fig8.every((r) => r.seed === 1 && r.deleteType === 'BodyPart'));
  const ends = { ...settings, fractions: [0.4, 0.9] };
  assert.deepEqual(experimentRuns('entity-deletion', ends).map((r) => r.id), [
    'bert-s1-del-BodyPart-0.4',
    'kbert-s1-del-BodyPart-0.4',
    'rmbert-s1-del-BodyPart-0.4',
    'bert-s1-del-BodyPart-0.9',
    'kbert-s1-del-BodyPart-0.9',
    'rmbert-s1-del-BodyPart-0.9',
  ]);
  assert.match(experimentCommand('entity-deletion', ends), /--fractions 0\.4,0\.9/);
  const withBaseline = experimentRuns('entity-deletion', { ...settings, fractions: [0, 0.9] }).map((r) => r.id);
  assert.deepEqual(withBaseline.slice(0, 3), ['bert-s1', 'kbert-s1', 'rmbert-s1'], 'nothing removed is the medical experiment\'s first-seed run');
});

test('a scaled RecAdam schedule renames only RecAdam runs; --methods selects a part; the command reproduces the settings', () => {
  const scaled = { ...settings, epochs: 3, learningRate: 2e-4, gamma: 750, anneal: { ...settings.anneal, medical: { k: 0.067, t0: 150 } } };
  const ids = experimentRuns('medical', scaled).map((r) => r.id);
  assert.deepEqual(ids, ['bert-s1', 'bert-s2', 'kbert-s1', 'kbert-s2', 'rmbert-s1-k0.067-t150', 'rmbert-s2-k0.067-t150']);
  const rm = experimentRuns('medical', scaled).find((r) => r.method === 'rmbert')!;
  assert.equal(rm.k, 0.067);
  assert.equal(rm.t0, 150);
  // fig. 7 keeps the given t0 and varies k.
  const fig7 = experimentRuns('recall-distance', scaled);
  assert.deepEqual(fig7.map((r) => [r.k, r.t0]), [[0.001, 150], [0.005, 150], [0.01, 150], [0.05, 150], [0.1, 150]]);
  assert.deepEqual(experimentRuns('medical', { ...scaled, methods: ['kbert'] }).map((r) => r.id), ['kbert-s1', 'kbert-s2']);
  assert.equal(
    experimentCommand('medical', scaled),
    'node --import tsx src/cli/main.ts experiment medical --seeds 1,2 --epochs 3 --lr 0.0002 --gamma 750 --k 0.067 --t0 150',
  );
  assert.equal(experimentCommand('msra', settings), 'node --import tsx src/cli/main.ts experiment msra --seeds 1,2 --epochs 5');
  // The ablation on one corpus: its runs and its command.
  const medicalOnly = { ...scaled, corpora: ['medical' as const] };
  assert.ok(experimentRuns('ablation', medicalOnly).every((r) => r.corpus === 'medical'));
  assert.equal(experimentRuns('ablation', medicalOnly).length, 10);
  assert.match(experimentCommand('ablation', medicalOnly), /--corpus medical --k 0\.067 --t0 150$/);
});

function evaluation(strictF1: number, kbertF1: number): NerEvaluation {
  const strict = { ...prf(0, 0, 0), f1: strictF1, precision: strictF1, recall: strictF1 };
  const kbert = { ...prf(0, 0, 0), f1: kbertF1, precision: kbertF1, recall: kbertF1 };
  return {
    sentences: 1,
    tokens: 1,
    strict,
    kbert,
    perType: { BodyPart: strict, Symptom: strict },
    confusion: { correct: 0, typeConfusion: 0, boundaryError: 0, boundaryAndType: 0, spurious: 0, missed: 0, typePairs: {} },
  };
}

function result(spec: Omit<RunSpec, 'id' | 'k' | 't0'>, strictF1: number, kbertF1: number): RunResult {
  return {
    spec: { ...spec, id: `${spec.method}-s${spec.seed}`, k: 0.01, t0: 1000 },
    settings: {},
    status: 'completed',
    steps: 10,
    bestEpoch: 1,
    history: [{ epoch: 1, dev: { strictF1: strictF1 - 0.01 } }],
    trainSentencesPerSecond: 1,
    trainSeconds: 1,
    parameters: 1,
    dev: null,
    test: evaluation(strictF1, kbertF1),
    curve: [{ step: 5, loss: 1, lambda: 0.1, l1: 2 }],
    finishedAt: '',
  };
}

test('medical summary: means over seeds of both metrics, per-type F1, backbone, markdown and SVGs', () => {
  const results = [
    result({ corpus: 'medical', method: 'bert', seed: 1 }, 0.8, 0.82),
    result({ corpus: 'medical', method: 'bert', seed: 2 }, 0.9, 0.92),
    result({ corpus: 'medical', method: 'rmbert', seed: 1 }, 0.85, 0.9),
    result({ corpus: 'medical', method: 'rmbert', seed: 2 }, 0.87, 0.9),
  ];
  const backbone = { dir: '/b', version: 'bb+123', layers: 3, hidden: 192, heads: 3, params: 5_500_000, pretrainingTokens: 4_000_000 };
  const out = summarize('medical', results, settings, backbone);
  const summary = out.json.summary as Record<string, any>;
  assert.ok(Math.abs(summary.bert.strictF1 - 0.85) < 1e-12);
  assert.ok(Math.abs(summary.bert.kbertMetricF1 - 0.87) < 1e-12);
  assert.ok(Math.abs(summary.bert.strictF1Std - Math.sqrt(0.005)) < 1e-12);
  assert.ok(Math.abs(summary.rmbert.strictF1 - 0.86) < 1e-12);
  assert.ok(Math.abs(summary.rmbert.perTypeF1.BodyPart - 0.86) < 1e-12);
  assert.deepEqual(summary.seeds, [1, 2]);
  assert.deepEqual(summary.backbone, { layers: 3, hidden: 192, heads: 3, params: 5_500_000, pretrainingTokens: 4_000_000, version: 'bb+123' });
  assert.match(out.markdown, /3 layers, hidden 192, 3 heads, 5\.50 M parameters, 4\.00 M pretraining tokens/);
  assert.match(out.markdown, /\| BERT \| 2 \| 85\.00 \| 85\.00 \| 85\.00 ± 7\.07 \| 87\.00 \| 87\.00 \| 87\.00 ± 7\.07 \| 93\.06 \|/);
  assert.match(out.markdown, /\| paper RM-BERT \| 89\.70 \| 98\.09 \|/);
  assert.deepEqual(Object.keys(out.svgs), ['medical.svg', 'medical-dev-curves.svg']);
  for (const svg of Object.values(out.svgs)) assert.match(svg, /^<\?xml[^>]*>\n<svg xmlns="http:\/\/www.w3.org\/2000\/svg"/);
});

test('--reuse takes runs from an earlier results file only when its settings and backbone are the same', async () => {
  const { mkdtemp, writeFile } = await import('node:fs/promises');
  const os = await import('node:os');
  const path = await import('node:path');
  const s = { ...settings, seeds: [1], fractions: [0.9] };
  const specs = experimentRuns('entity-deletion', s);
  const results = specs.map((spec, i) => ({ ...result({ corpus: 'medical', method: spec.method, seed: 1 }, 0.6 + i / 100, 0.7), spec }));
  const backbone = { dir: '/b', version: 'bb+123', layers: 3, hidden: 192, heads: 3, params: 5_500_000, pretrainingTokens: 4_000_000 };
  const file = path.join(await mkdtemp(path.join(os.tmpdir(), 'rmbert-reuse-')), 'entity-deletion.json');
  await writeFile(file, JSON.stringify(summarize('entity-deletion', results, s, backbone).json));

  const reused = await loadReusableRuns([file], s, 'bb+123');
  assert.deepEqual([...reused.keys()], specs.map((spec) => `medical/${spec.id}`));
  const rm = reused.get(`medical/${specs[2].id}`)!;
  assert.equal(rm.test.strict.f1, 0.62);
  assert.equal(rm.test.perType.BodyPart.f1, 0.62);
  assert.equal(rm.status, 'reused');
  assert.match(rm.reusedFrom!, /entity-deletion\.json$/);

  const json = summarize('entity-deletion', results, s, backbone).json;
  const rewritten = { ...json, machine: 'machine B', date: '2026-02-02', details: { ...(json.details as Record<string, unknown>), reused: [{ id: specs[0].id, corpus: 'medical', from: 'first.json', recorded: '2026-01-01', machine: 'machine A' }] } };
  await writeFile(file, JSON.stringify(rewritten));
  const again = await loadReusableRuns([file], s, 'bb+123');
  const first = again.get(`medical/${specs[0].id}`)!;
  assert.deepEqual([first.reusedFrom, first.finishedAt, first.reusedMachine], ['first.json', '2026-01-01', 'machine A'], 'a run taken before keeps where it was trained');
  const second = again.get(`medical/${specs[1].id}`)!;
  assert.deepEqual([second.finishedAt, second.reusedMachine], ['2026-02-02', 'machine B']);

  await assert.rejects(loadReusableRuns([file], { ...s, epochs: s.epochs + 1 }, 'bb+123'), /other settings \(epochs 5 instead of 6\)/);
  await assert.rejects(loadReusableRuns([file], s, 'bb+456'), /backbone bb\+123, this command uses bb\+456/);
  const fig7 = experimentRuns('recall-distance', s).map((spec, i) => ({ ...result({ corpus: 'medical', method: 'rmbert', seed: 1 }, 0.8, 0.8), spec, curve: [{ step: 10, loss: 1, lambda: 0.5, l1: i }] }));
  await writeFile(file, JSON.stringify(summarize('recall-distance', fig7, s, backbone).json));
  const curves = await loadReusableRuns([file], s, 'bb+123');
  assert.deepEqual(fig7.map((r) => curves.get(`medical/${r.spec.id}`)?.curve), fig7.map((r) => r.curve), "fig. 7's curves come back by k");
  await writeFile(file, '{"summary": {}}');
  await assert.rejects(loadReusableRuns([file], s, 'bb+123'), /not an experiment results file/);
});
