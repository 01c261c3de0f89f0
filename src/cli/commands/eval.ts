/**
 * `rmbert eval`: scores a fine-tuned NER model on a test set with both metrics (strict and K-BERT),
 * per-type F1 and an error breakdown.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../errors/index.ts';
import { selectBackend } from '../../model/backend.ts';
import type { BackendChoice } from '../../model/backend.ts';
import { BertTokenizer } from '../../model/tokenizer.ts';
import { defaultDataDir, MEDICAL_TYPE_NAMES_ZH, readKbertTsv } from '../../train/datasets.ts';
import type { NerDataset } from '../../train/datasets.ts';
import { createInjector, evaluateModel, loadNerModel, prepareExamples } from '../../train/evaluate.ts';
import { formatEvaluation } from '../../train/metrics.ts';
import { CORPUS_DEFAULTS } from './finetune.ts';

export const summary = 'score a fine-tuned NER model: strict and K-BERT micro P/R/F1, per-type F1, errors';

const HELP = `usage: rmbert eval --model DIR --data medical|msra|FILE.tsv [options]

Predicts tags for every sentence (knowledge injected as the model was trained), decodes them with
the BIO-constrained Viterbi, and scores them on the dataset's characters:
  strict   micro P/R/F1, an entity is correct when its span and its type match;
  K-BERT   micro P/R/F1 as K-BERT's run_kbert_ner.py computes it (span boundaries only, type ignored),
           the metric the paper's tables use;
plus strict P/R/F1 per entity type and an error breakdown (type confusions, boundary errors,
spurious and missed entities).

  --model DIR        fine-tuned model artifact (e.g. models/medical)
  --data NAME|FILE   medical or msra (K-BERT's split, --split picks dev or test), or a K-BERT-format
                     TSV file (header text_a<TAB>label)
  --split NAME       test (default) or dev, for medical and msra
  --data-dir DIR     shared data folder (default ../shared/data)
  --kg FILE          .spo graph to inject (default: data/kg/Medical.spo for medical, HowNet.spo for
                     msra; for a TSV file, required when the model uses knowledge)
  --json FILE        also write the scores as JSON
  --batch-tokens N   padded tokens per forward batch (default 4096)
  --backend NAME     auto | node-gpu | node | wasm | cpu (default auto)
  -h, --help         this text
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      model: { type: 'string' },
      data: { type: 'string' },
      split: { type: 'string' },
      'data-dir': { type: 'string' },
      kg: { type: 'string' },
      json: { type: 'string' },
      'batch-tokens': { type: 'string' },
      backend: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const problems: string[] = [];
  if (!values.model) problems.push('--model DIR is required');
  else if (!existsSync(path.join(values.model, 'manifest.json'))) problems.push(`no model artifact at ${values.model} (manifest.json missing)`);
  if (!values.data) problems.push('--data medical|msra|FILE.tsv is required');
  const split = values.split ?? 'test';
  if (split !== 'test' && split !== 'dev') problems.push('--split must be test or dev');
  const named = values.data === 'medical' || values.data === 'msra' ? values.data : null;
  if (values.data && !named && !existsSync(values.data)) problems.push(`--data: ${values.data} is neither medical, msra nor an existing file`);
  const batchTokens = Number(values['batch-tokens'] ?? 4096);
  if (!Number.isInteger(batchTokens) || batchTokens < 8) problems.push('--batch-tokens must be an integer >= 8');
  if (problems.length) throw new ConfigError(problems);

  await selectBackend((values.backend ?? 'auto') as BackendChoice);
  const tokenizer = await BertTokenizer.load();
  const loaded = await loadNerModel(values.model!, tokenizer);
  try {
    const dataDir = values['data-dir'] ? path.resolve(values['data-dir']) : defaultDataDir();
    let dataset: NerDataset;
    if (named) {
      const folder = named === 'medical' ? 'kbert-medical-ner' : 'kbert-msra-ner';
      dataset = readKbertTsv(path.join(dataDir, folder, `${split}.tsv`), { types: loaded.types, name: `${named}-${split}` });
    } else {
      dataset = readKbertTsv(values.data!, { types: loaded.types });
    }
    for (const w of dataset.warnings) console.error(`warning: ${w}`);
    const kgFile = values.kg ? path.resolve(values.kg) : named ? CORPUS_DEFAULTS[named].kg : undefined;
    if (loaded.knowledge.enabled && !kgFile) throw new ConfigError(['this model was trained with knowledge injection: give the graph with --kg FILE']);
    const setup = await createInjector(tokenizer, { ...loaded.knowledge, kgFile });
    const trained = loaded.artifact.config.knowledge.kgVersion;
    if (loaded.knowledge.enabled && trained && setup.kgVersion !== trained) {
      console.error(`warning: the graph ${path.basename(kgFile!)} (version ${setup.kgVersion?.slice(0, 12)}) is not the one the model was trained with (${trained.slice(0, 12)})`);
    }
    const prepared = await prepareExamples(dataset.sentences, setup.injector, loaded.labels);
    const started = performance.now();
    const { evaluation } = await evaluateModel(loaded.model, loaded.labels, prepared, loaded.types, { batchTokens, padId: tokenizer.padId });
    const seconds = (performance.now() - started) / 1000;
    const version = `${loaded.artifact.version.name}+${loaded.artifact.version.hash}`;
    console.log(`model ${version} on ${dataset.name} (${dataset.source})`);
    console.log(formatEvaluation(evaluation, named === 'medical' ? MEDICAL_TYPE_NAMES_ZH : {}));
    console.log(`\n${(dataset.sentences.length / seconds).toFixed(1)} sentences/s (prediction and decoding)`);
    if (values.json) {
      await writeFile(
        values.json,
        JSON.stringify(
          {
            model: version,
            modelDir: path.resolve(values.model!),
            data: dataset.name,
            source: dataset.source,
            knowledge: { ...loaded.knowledge, kgFile: kgFile ? path.basename(kgFile) : null, kgVersion: setup.kgVersion ?? null },
            evaluation,
            seconds,
          },
          null,
          1,
        ) + '\n',
      );
    }
    return 0;
  } finally {
    loaded.model.dispose();
  }
}
