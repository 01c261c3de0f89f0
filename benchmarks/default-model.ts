/**
 * The default medical model (models/medical) scored the way `rmbert eval` scores any model, on dev and
 * test, beside the peers a user would weigh it against: the training-set dictionary (in eval's output)
 * and the character CRF (benchmarks/results/crf.json, trained and scored on the same split).
 *
 *   node --import tsx benchmarks/default-model.ts [--model models/medical]
 *
 * Writes benchmarks/results/medical-default-model.{json,md}.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { loadAverage, machineDescription } from './engines-common.ts';
import type { EvalJson } from './eval-json.ts';

const { values } = parseArgs({ options: { model: { type: 'string', default: 'models/medical' } } });
const root = path.resolve(import.meta.dirname, '..');
const tmp = mkdtempSync(path.join(os.tmpdir(), 'rmbert-default-model-'));
const loadStart = loadAverage();

const evaluate = (split: 'dev' | 'test'): EvalJson => {
  const out = path.join(tmp, `${split}.json`);
  execFileSync(process.execPath, ['bin/rmbert.js', 'eval', '--model', values.model, '--data', 'medical', '--split', split, '--json', out], { cwd: root, stdio: ['ignore', 'ignore', 'inherit'] });
  return JSON.parse(readFileSync(out, 'utf8')) as EvalJson;
};
const dev = evaluate('dev');
const test = evaluate('test');
rmSync(tmp, { recursive: true, force: true });

const crfFile = path.join(root, 'benchmarks/results/crf.json');
const crf = existsSync(crfFile) ? (JSON.parse(readFileSync(crfFile, 'utf8')) as { summary: { medical?: { strictF1: number; perType: Record<string, number> } } }).summary.medical : undefined;
const config = JSON.parse(readFileSync(path.join(root, values.model, 'config.json'), 'utf8')) as { name: string; training?: Record<string, unknown> };
const pct = (x: number) => Math.round(x * 10000) / 100;
const types = Object.keys(test.evaluation.perType);
const perTypeOverDictionary = Object.fromEntries(types.map((t) => [t, pct(test.evaluation.perType[t].f1 - (test.baseline?.evaluation.perType[t]?.f1 ?? 0))]));
// crf.json holds fractions, as eval's JSON does.
const perTypeUnderCrf = crf ? Object.fromEntries(types.map((t) => [t, pct(crf.perType[t] - test.evaluation.perType[t].f1)])) : null;
const summary = {
  model: test.model,
  testStrictF1: pct(test.evaluation.strict.f1),
  testKbertMetricF1: pct(test.evaluation.kbert.f1),
  devStrictF1: pct(dev.evaluation.strict.f1),
  perTypeStrictF1: Object.fromEntries(types.map((t) => [t, pct(test.evaluation.perType[t].f1)])),
  dictionaryStrictF1: test.baseline ? pct(test.baseline.evaluation.strict.f1) : null,
  bootstrapLow: test.bootstrap ? pct(test.bootstrap.low) : null,
  bootstrapHigh: test.bootstrap ? pct(test.bootstrap.high) : null,
  perTypeOverDictionary,
  crfStrictF1: crf ? pct(crf.strictF1) : null,
  perTypeBelowCrf: perTypeUnderCrf,
  seenRecall: test.surfaces ? pct(test.surfaces.model.seen.recall) : null,
  unseenRecall: test.surfaces ? pct(test.surfaces.model.unseen.recall) : null,
  singleCharWrongShare: test.singleChar ? pct(test.singleChar.shareOfPredictions) : null,
};
const results = {
  command: `node --import tsx benchmarks/default-model.ts --model ${values.model}`,
  machine: machineDescription(),
  loadAverage: { start: loadStart, end: loadAverage() },
  date: new Date().toISOString(),
  summary,
  training: config.training,
  details: { dev, test },
};
writeFileSync(path.join(root, 'benchmarks/results/medical-default-model.json'), `${JSON.stringify(results, null, 2)}\n`);
const md = [
  '# Default medical model (models/medical)',
  '',
  `Command: \`${results.command}\` (runs \`rmbert eval\` on dev and test). Machine: ${results.machine}; load average ${loadStart.join(' ')} at start.`,
  '',
  `Model \`${summary.model}\`. ${String(config.training?.shippingNote ?? '')}`,
  '',
  '| | strict F1 | K-BERT metric F1 |',
  '|---|---|---|',
  `| dev (939 sentences) | ${summary.devStrictF1} | ${pct(dev.evaluation.kbert.f1)} |`,
  `| test (755 sentences) | ${summary.testStrictF1} | ${summary.testKbertMetricF1} |`,
  `| training-set dictionary, test | ${summary.dictionaryStrictF1} | |`,
  `| character CRF peer, test (benchmarks/results/crf.md) | ${summary.crfStrictF1 ?? 'n/a'} | |`,
  '',
  `Model minus dictionary, test strict F1: paired bootstrap 95 % interval [${summary.bootstrapLow}, ${summary.bootstrapHigh}] points.`,
  `Recall on gold surfaces seen in training ${summary.seenRecall} %, on unseen surfaces ${summary.unseenRecall} %. Wrong one-character predictions: ${summary.singleCharWrongShare} % of all predictions.`,
  '',
  '| type | test strict F1 | minus dictionary | CRF minus model |',
  '|---|---|---|---|',
  ...types.map((t) => `| ${t} | ${summary.perTypeStrictF1[t]} | ${perTypeOverDictionary[t]} | ${perTypeUnderCrf ? perTypeUnderCrf[t] : 'n/a'} |`),
  '',
];
writeFileSync(path.join(root, 'benchmarks/results/medical-default-model.md'), md.join('\n'));
console.log(JSON.stringify(summary, null, 2));
