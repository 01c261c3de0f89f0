/**
 * `rmbert eval`: scores a fine-tuned NER model on a test set with both metrics (strict and K-BERT),
 * per-type F1 and an error breakdown, next to the training-set dictionary baseline (with a paired
 * bootstrap interval of the F1 difference), recall on seen and unseen surfaces and the share of
 * wrong one-character predictions; optionally writes every prediction as JSON lines.
 */
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../errors/index.ts';
import { selectBackend } from '../../model/backend.ts';
import type { BackendChoice } from '../../model/backend.ts';
import { readTokenizerOptions } from '../../model/artifact.ts';
import { BertTokenizer, DEFAULT_VOCAB_PATH } from '../../model/tokenizer.ts';
import { segmentSentences } from '../../pipeline/segment.ts';
import { charOffsets } from '../../train/baselines.ts';
import { analyseModel, formatAnalysis, predictionRecord } from '../../train/baselines.ts';
import { defaultDataDir, loadCorpus, MEDICAL_TYPE_NAMES_ZH, readKbertTsv } from '../../train/datasets.ts';
import type { NerDataset, NerSentence } from '../../train/datasets.ts';
import { createInjector, loadNerModel, predictCharTags, prepareExamples, scorePredictions } from '../../train/evaluate.ts';
import type { PredictOptions } from '../../train/evaluate.ts';
import type { BertModel } from '../../model/bert.ts';
import type { KnowledgeInjector } from '../../knowledge/index.ts';
import { formatEvaluation } from '../../train/metrics.ts';
import { CORPUS_DEFAULTS } from './finetune.ts';

export const summary = 'score a fine-tuned NER model: strict and K-BERT micro P/R/F1, per-type F1, errors, dictionary baseline';

const HELP = `usage: rmbert eval --model DIR --data medical|msra|FILE.tsv [options]

Predicts tags for every sentence (knowledge injected as the model was trained), decodes them with
the BIO-constrained Viterbi, and scores them on the dataset's characters:
  strict   micro P/R/F1, an entity is correct when its span and its type match;
  K-BERT   micro P/R/F1 as K-BERT's run_kbert_ner.py computes it (span boundaries only, type ignored),
           the metric the paper's tables use;
plus strict P/R/F1 per entity type and an error breakdown (type confusions, boundary errors,
spurious and missed entities). On the same sentences, to tell what the score is worth:
  dictionary  the training split's entity surfaces looked up in the text (leftmost-longest, each
              surface with its most frequent training type): strict P/R/F1, per-type F1, and the
              paired bootstrap 95% interval of model F1 - dictionary F1 (1000 resamples of the
              sentences, seed 1);
  surfaces    recall of the gold entities whose exact text is a training entity (seen) and of the
              others (unseen), for the model and the dictionary;
  one-char    one-character predictions that are not a gold entity, as a share of all predictions,
              of one-character predictions and of false positives.

  --model DIR        fine-tuned model artifact (e.g. models/medical)
  --data NAME|FILE   medical or msra (K-BERT's split, --split picks dev or test), or a K-BERT-format
                     TSV file (header text_a<TAB>label)
  --split NAME       test (default) or dev, for medical and msra
  --data-dir DIR     shared data folder (default ../shared/data)
  --kg FILE          .spo graph to inject (default: data/kg/Medical.spo for medical, HowNet.spo for
                     msra; for a TSV file, required when the model uses knowledge)
  --extra-kg FILE    another .spo graph loaded beside --kg (repeatable), as the model was trained with
                     (e.g. a term list or the CMeKG typed view; see rmbert features)
  --train FILE       training split (K-BERT TSV) for the dictionary and seen/unseen surfaces
                     (default: the named dataset's train split; none for a TSV --data: skipped)
  --json FILE        also write the scores as JSON (the figures above in baseline, bootstrap,
                     surfaces, singleChar)
  --predictions FILE write one JSON line per sentence: {"sentence", "text", "entities": [{"start",
                     "end", "type", "text"}], "gold": [...]} (UTF-16 offsets into text, end exclusive)
  --segment MODE     whole (default): each dataset sentence is one model input, K-BERT's protocol
                     (and finetune's dev score); pipeline: each is first cut at 。！？；!?; as the
                     stream stage and \`rmbert annotate\` cut a document, then the tags are put back
                     together (the scores \`annotate\` would get). The other mode's strict F1 is
                     printed too, computed again on the sentences the stage would cut.
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
      'extra-kg': { type: 'string', multiple: true },
      train: { type: 'string' },
      json: { type: 'string' },
      predictions: { type: 'string' },
      segment: { type: 'string' },
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
  if (values.train && !existsSync(values.train)) problems.push(`--train: no file ${values.train}`);
  const segment = values.segment ?? 'whole';
  if (segment !== 'whole' && segment !== 'pipeline') problems.push('--segment must be whole or pipeline');
  const batchTokens = Number(values['batch-tokens'] ?? 4096);
  if (!Number.isInteger(batchTokens) || batchTokens < 8) problems.push('--batch-tokens must be an integer >= 8');
  if (problems.length) throw new ConfigError(problems);

  await selectBackend((values.backend ?? 'auto') as BackendChoice);
  // The model's own tokenization (config.tokenizer: full-width folding, on unless it says otherwise).
  const tokenizer = await BertTokenizer.load(DEFAULT_VOCAB_PATH, await readTokenizerOptions(values.model!));
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
    const extraKgFiles = (values['extra-kg'] ?? []).map((f) => path.resolve(f));
    const missingExtra = extraKgFiles.filter((f) => !existsSync(f));
    if (missingExtra.length) throw new ConfigError(missingExtra.map((f) => `--extra-kg ${f} not found`));
    const setup = await createInjector(tokenizer, { ...loaded.knowledge, kgFile, extraKgFiles });
    const trained = loaded.artifact.config.knowledge.kgVersion;
    if (loaded.knowledge.enabled && trained && setup.kgVersion !== trained) {
      console.error(`warning: the graph ${path.basename(kgFile!)} (version ${setup.kgVersion?.slice(0, 12)}) is not the one the model was trained with (${trained.slice(0, 12)})`);
    }
    const predictOptions: PredictOptions = { batchTokens, padId: tokenizer.padId, crf: loaded.crf };
    const segmented = pipelineSegments(dataset.sentences);
    const started = performance.now();
    const predicted = await predictTags(loaded.model, loaded.labels, setup.injector, dataset.sentences, segment === 'pipeline' ? segmented : null, predictOptions);
    const seconds = (performance.now() - started) / 1000;
    const evaluation = scorePredictions(dataset.sentences, predicted, loaded.types);
    // The other mode, again on the sentences the stage cuts (elsewhere both modes feed the same text).
    const cut = dataset.sentences.map((_, i) => i).filter((i) => segmented.cut[i]);
    const cutSentences = cut.map((i) => dataset.sentences[i]);
    const again = await predictTags(loaded.model, loaded.labels, setup.injector, cutSentences, segment === 'pipeline' ? null : pipelineSegments(cutSentences), predictOptions);
    const otherPredicted = predicted.slice();
    cut.forEach((i, k) => (otherPredicted[i] = again[k]));
    const segmentation = {
      mode: segment,
      cutSentences: cut.length,
      segments: segmented.pieces.length,
      differingSentences: cut.filter((i) => otherPredicted[i].some((t, c) => t !== predicted[i][c])).length,
      other: { mode: segment === 'pipeline' ? 'whole' : 'pipeline', strict: scorePredictions(dataset.sentences, otherPredicted, loaded.types).strict },
    };
    const train = values.train
      ? readKbertTsv(values.train, { types: loaded.types, name: 'train' })
      : named
        ? loadCorpus(named, dataDir).train
        : null;
    const analysis = analyseModel({
      sentences: dataset.sentences,
      predicted,
      types: loaded.types,
      evaluation,
      train: train ? { source: train.source, sentences: train.sentences } : null,
    });
    const version = `${loaded.artifact.version.name}+${loaded.artifact.version.hash}`;
    console.log(`model ${version} on ${dataset.name} (${dataset.source}), ${segment === 'whole' ? 'each sentence whole' : 'each sentence cut as the stage cuts documents'}`);
    console.log(formatEvaluation(evaluation, named === 'medical' ? MEDICAL_TYPE_NAMES_ZH : {}));
    console.log('');
    console.log(
      `${segmentation.other.mode === 'pipeline' ? 'cut as the stage and annotate cut documents' : 'each sentence whole'} (${segmentation.cutSentences} sentences cut ` +
        `into more pieces): strict F1 ${(100 * segmentation.other.strict.f1).toFixed(2)} (correct ${segmentation.other.strict.correct}, predicted ` +
        `${segmentation.other.strict.predicted}), ${segmentation.differingSentences} sentences predicted differently`,
    );
    if (!train) console.log('no training split (--train FILE): dictionary baseline and seen/unseen recall skipped');
    console.log(formatAnalysis(analysis, evaluation));
    console.log(`\n${(dataset.sentences.length / seconds).toFixed(1)} sentences/s (prediction and decoding)`);
    if (values.predictions) {
      const lines = dataset.sentences.map((sentence, i) => `${JSON.stringify(predictionRecord(i, sentence, predicted[i]))}\n`);
      await writeFile(values.predictions, lines.join(''));
    }
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
            segmentation,
            ...analysis,
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

/** Dataset sentences cut into the pieces the stage's segmentation makes of them (as one document each). */
export interface PipelineSegments {
  pieces: NerSentence[];
  /** Per piece: its sentence and the index of its first character there. */
  origin: Array<{ sentence: number; char: number }>;
  /** Per sentence: true when the pieces are not the sentence itself (cut, or white space trimmed). */
  cut: boolean[];
}

/**
 * Cuts every sentence with the pipeline's `segmentSentences` (at 。！？；!?; and line breaks, white
 * space trimmed), on character boundaries. A piece's labels are the sentence's (a leading I- made B-).
 */
export function pipelineSegments(sentences: readonly NerSentence[]): PipelineSegments {
  const pieces: NerSentence[] = [];
  const origin: Array<{ sentence: number; char: number }> = [];
  const cut: boolean[] = [];
  sentences.forEach((s, index) => {
    const offsets = charOffsets(s);
    // Character index of every UTF-16 offset (the character it falls in).
    const charOf = new Int32Array(s.text.length + 1);
    for (let c = 0; c < s.chars.length; c++) charOf.fill(c, offsets[c], offsets[c + 1]);
    charOf[s.text.length] = s.chars.length;
    let from = 0;
    let count = 0;
    for (const seg of segmentSentences('', s.text)) {
      const first = Math.max(from, charOf[seg.start]);
      const end = Math.max(first, seg.end >= s.text.length ? s.chars.length : charOf[seg.end - 1] + 1);
      if (end <= first) continue;
      const chars = s.chars.slice(first, end);
      const labels = s.labels.slice(first, end);
      if (labels[0].startsWith('I-')) labels[0] = `B-${labels[0].slice(2)}`;
      pieces.push({ chars, text: chars.join(''), labels, repaired: [] });
      origin.push({ sentence: index, char: first });
      from = end;
      count++;
    }
    cut.push(!(count === 1 && pieces[pieces.length - 1].chars.length === s.chars.length));
  });
  return { pieces, origin, cut };
}

/** Per-sentence tags from the pieces' tags; characters in no piece (trimmed white space) get O. */
export function joinPieceTags(sentences: readonly NerSentence[], segments: PipelineSegments, pieceTags: readonly (readonly string[])[]): string[][] {
  const out = sentences.map((s) => new Array<string>(s.chars.length).fill('O'));
  segments.origin.forEach(({ sentence, char }, p) => {
    pieceTags[p].forEach((tag, k) => (out[sentence][char + k] = tag));
  });
  return out;
}

/** The model's per-character tags of `sentences`, each fed whole or, given `segments` (of the same sentences), cut in pieces. */
async function predictTags(
  model: BertModel,
  labels: readonly string[],
  injector: KnowledgeInjector,
  sentences: readonly NerSentence[],
  segments: PipelineSegments | null,
  options: PredictOptions,
): Promise<string[][]> {
  const input = segments ? segments.pieces : sentences;
  if (input.length === 0) return sentences.map((s) => new Array<string>(s.chars.length).fill('O'));
  const prepared = await prepareExamples(input, injector, labels);
  const tags = await predictCharTags(model, labels, prepared, options);
  return segments ? joinPieceTags(sentences, segments, tags) : tags;
}
