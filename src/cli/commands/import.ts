/**
 * `rmbert import`: turn a standard BERT checkpoint (safetensors) into a model artifact directory.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { SingleBar } from 'cli-progress';
import { ModelError } from '../../errors/index.ts';
import { embeddingsShowFoldedText, labelProblems, writeArtifact } from '../../model/artifact.ts';
import { importCheckpointFile } from '../../model/checkpoint-import.ts';
import { BertTokenizer, DEFAULT_VOCAB_PATH } from '../../model/tokenizer.ts';
import { selectBackend } from '../../model/backend.ts';
import { measureLogitParity, parseParityFile } from '../../model/logit-parity.ts';
import type { ParityReport } from '../../model/logit-parity.ts';
import type { ArtifactConfig } from '../../model/types.ts';

export const summary = 'import a BERT checkpoint (FILE.safetensors) as a model artifact directory';

const HELP = `usage: rmbert import FILE.safetensors --out DIR [options]

Maps a standard BERT checkpoint in safetensors format onto the model's weight names and writes a
verified artifact directory (config.json, weights.safetensors, manifest.json with sha256 hashes).
Accepted: Hugging Face BertModel (no prefix), BertForTokenClassification / BertForMaskedLM /
BertForPreTraining ("bert." prefix), and gamma/beta LayerNorm names of TF-converted checkpoints. The
pooler, the next-sentence head and buffers are not imported; the tool lists what it left out.
The model shape comes from --config, else a Hugging Face config.json beside FILE, else the tensor
shapes (then 64-wide attention heads are assumed, as in BERT, and the tool says so).

options:
  --out DIR              artifact directory to create (required)
  --name NAME            artifact name, no spaces or "+" (default: imported-<FILE name>)
  --config FILE          Hugging Face config.json to use instead of the one beside FILE
  --labels O,B-X,I-X     label set of the checkpoint's token-classification head, "O" first; required
                         when the checkpoint has a classifier (unless --drop-classifier or --training
                         names a summary with a "labels" list)
  --drop-classifier      leave the classification head out (import the backbone only)
  --drop-mlm-head        leave the masked-LM head out
  --vocab FILE           vocab.txt the checkpoint's token ids refer to (default: the shipped
                         bert-base-chinese vocabulary); its size must equal the checkpoint's
  --dtype f32|f16        precision of the stored weights (default f32)
  --fold-full-width      record that the checkpoint was trained on text with full-width forms folded
                         to ASCII ("，" as ","), as this project's corpora and features are; default: on
                         with --parity (only this project's trainer writes it) or when the embeddings of
                         "，：；（）" are the [UNK] row (a backbone exported by python/rmbert_train), else off:
                         Hugging Face's tokenization, which bert-base-chinese and other checkpoints saw
  --knowledge            mark the artifact as expecting knowledge injection (default: off, as a
                         checkpoint trained elsewhere was trained without it)
  --inject MODE          relation+object (default) or object, recorded for --knowledge
  --max-entities N       triples injected per matched name, recorded (default 2)
  --max-length N         longest input in tokens, recorded (default: min(256, max positions))
  --parity FILE          parity.json of the exporting trainer (python/rmbert_train/finetune.py): inputs of
                         a few injected examples and their logits there; the artifact is written only if
                         this model's TensorFlow.js logits agree within 1e-4 (relative to the largest logit)
  --training FILE        a JSON summary of how the checkpoint was trained (e.g. the trainer's
                         training.json), recorded in the artifact's config under training.trainer
  --overwrite            replace DIR if it exists
  --no-progress          no progress bar
  -h, --help             this text

exit status: 0 written, 1 failed (the message says why), 2 bad usage.
`;

const PARITY_TOLERANCE = 1e-4;

/** The knowledge settings that python/rmbert_train/finetune.py copies from the features' meta.json. */
interface TrainerKnowledge {
  enabled: boolean;
  inject: 'relation+object' | 'object';
  maxEntities: number;
  maxLength: number;
  softPositions?: boolean;
  visibilityMatrix?: boolean;
  kgVersion?: string | null;
  extraKgFiles?: string[];
  terms?: unknown;
}

async function readJson(file: string, flag: string): Promise<unknown> {
  try {
    return JSON.parse(await readFile(file, 'utf8')) as unknown;
  } catch (error) {
    throw new ModelError(`cannot read ${flag} ${file}: ${(error as Error).message}`, { cause: error });
  }
}

function usageError(message: string): number {
  console.error(`rmbert import: ${message}\nRun \`rmbert import --help\` for the options.`);
  return 2;
}

function positiveInt(text: string | undefined, flag: string, fallback: number): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 0) throw new ModelError(`${flag} must be a non-negative integer (got "${text}")`);
  return n;
}

export async function run(argv: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        out: { type: 'string' },
        name: { type: 'string' },
        config: { type: 'string' },
        labels: { type: 'string' },
        'drop-classifier': { type: 'boolean', default: false },
        'drop-mlm-head': { type: 'boolean', default: false },
        vocab: { type: 'string' },
        dtype: { type: 'string', default: 'f32' },
        'fold-full-width': { type: 'boolean', default: false },
        knowledge: { type: 'boolean', default: false },
        inject: { type: 'string', default: 'relation+object' },
        'max-entities': { type: 'string' },
        'max-length': { type: 'string' },
        overwrite: { type: 'boolean', default: false },
        parity: { type: 'string' },
        training: { type: 'string' },
        'no-progress': { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
  } catch (error) {
    return usageError((error as Error).message);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (positionals.length !== 1) return usageError('give exactly one checkpoint file (FILE.safetensors)');
  if (!values.out) return usageError('--out DIR is required');
  const dtype = values.dtype.toUpperCase();
  if (dtype !== 'F32' && dtype !== 'F16') return usageError(`--dtype must be f32 or f16 (got "${values.dtype}")`);
  if (values.inject !== 'relation+object' && values.inject !== 'object') return usageError('--inject must be relation+object or object');
  const file = positionals[0];
  const name = values.name ?? `imported-${path.basename(file).replace(/\.safetensors$/, '').replace(/[^A-Za-z0-9._-]+/g, '-')}`;
  if (/[+\s]/.test(name) || name.length === 0) return usageError('--name must be non-empty, without spaces or "+"');

  const bar = values['no-progress'] ? null : new SingleBar({ format: 'import [{bar}] {value}/{total} {step}', stream: process.stderr });
  bar?.start(3, 0, { step: 'reading checkpoint' });
  try {
    let hfConfig: Record<string, unknown> | undefined;
    if (values.config) {
      try {
        hfConfig = JSON.parse(await readFile(values.config, 'utf8')) as Record<string, unknown>;
      } catch (error) {
        throw new ModelError(`cannot read --config ${values.config}: ${(error as Error).message}`, { cause: error });
      }
    }
    const imported = await importCheckpointFile(file, {
      hfConfig,
      dropClassifier: values['drop-classifier'],
      dropMlmHead: values['drop-mlm-head'],
    });
    bar?.update(1, { step: 'checking vocabulary and labels' });

    const tokenizer = await BertTokenizer.load(values.vocab ?? DEFAULT_VOCAB_PATH);
    if (tokenizer.vocabSize !== imported.config.vocabSize) {
      throw new ModelError(
        `the checkpoint has ${imported.config.vocabSize} token embeddings but the vocabulary ${values.vocab ?? DEFAULT_VOCAB_PATH} has ${tokenizer.vocabSize} tokens; pass the checkpoint's vocab.txt with --vocab`,
      );
    }
    const trainer = values.training ? await readJson(values.training, '--training') : undefined;
    const trainerLabels = (trainer as { labels?: unknown } | undefined)?.labels;
    const labelList = values.labels ?? (Array.isArray(trainerLabels) ? trainerLabels.join(',') : undefined);
    let labels: string[] = [];
    if (imported.numLabels > 0) {
      if (!labelList) {
        throw new ModelError(`the checkpoint has a ${imported.numLabels}-label classifier: pass its labels with --labels (O first), or --drop-classifier`);
      }
      labels = labelList.split(',').map((l) => l.trim());
      if (labels.length !== imported.numLabels) {
        throw new ModelError(`--labels lists ${labels.length} labels, the checkpoint's classifier has ${imported.numLabels}`);
      }
      const problems = labelProblems(labels);
      if (problems.length > 0) throw new ModelError(`--labels: ${problems.join('; ')}`);
    } else if (values.labels) {
      throw new ModelError('--labels given, but the checkpoint has no classification head to label');
    }

    let parity: ParityReport | null = null;
    if (values.parity) {
      const examples = parseParityFile(await readJson(values.parity, '--parity'), values.parity);
      await selectBackend('auto', () => undefined);
      parity = await measureLogitParity(imported.config, imported.weights, imported.numLabels, examples);
      if (!(parity.relativeError <= PARITY_TOLERANCE)) {
        throw new ModelError(
          `parity check failed: the TensorFlow.js logits differ from ${values.parity} by up to ${parity.maxAbsError.toExponential(2)} ` +
            `(relative ${parity.relativeError.toExponential(2)} > ${PARITY_TOLERANCE}) on ${parity.examples} examples; the artifact was not written`,
        );
      }
    }
    const source = await readFile(file);
    const folded = values['fold-full-width'] ? '--fold-full-width' : values.parity ? '--parity' : embeddingsShowFoldedText(imported.weights, tokenizer) ? 'embeddings' : null;
    // A summary from this project's trainer says how the examples were injected (rmbert features' meta):
    // the model must be served the same way, whatever the knowledge flags say.
    const trainerKnowledge = (trainer as { knowledge?: TrainerKnowledge } | undefined)?.knowledge ?? null;
    const trainedKnowledge: ArtifactConfig['knowledge'] | null = trainerKnowledge
      ? {
          inject: trainerKnowledge.inject,
          maxEntities: trainerKnowledge.maxEntities,
          maxLength: trainerKnowledge.maxLength,
          enabled: trainerKnowledge.enabled,
          ...(trainerKnowledge.kgVersion && !trainerKnowledge.extraKgFiles?.length && !trainerKnowledge.terms ? { kgVersion: trainerKnowledge.kgVersion } : {}),
        }
      : null;
    if (trainedKnowledge && (values['max-entities'] !== undefined || values['max-length'] !== undefined)) {
      throw new ModelError('--max-entities / --max-length contradict --training, which records how the model was trained: leave them out');
    }
    const config: ArtifactConfig = {
      name,
      model: imported.config,
      labels,
      vocabSha256: tokenizer.vocabSha256,
      tokenizer: { foldFullWidth: folded !== null },
      knowledge: trainedKnowledge ?? {
        inject: values.inject,
        maxEntities: positiveInt(values['max-entities'], '--max-entities', 2),
        maxLength: Math.max(1, positiveInt(values['max-length'], '--max-length', Math.min(256, imported.config.maxPositions))),
        enabled: values.knowledge,
      },
      training: {
        importedFrom: path.basename(file),
        sourceSha256: createHash('sha256').update(source).digest('hex'),
        configSource: imported.configSource,
        mlmHead: imported.hasMlmHead,
        unused: imported.unused.map((u) => `${u.name}: ${u.reason}`),
        missing: imported.missing,
        notes: imported.notes,
        ...(imported.hasCrf ? { head: 'crf' } : {}),
        ...(parity ? { parity } : {}),
        ...(trainer !== undefined ? { trainer } : {}),
        ...(trainerKnowledge ? { softPositions: trainerKnowledge.softPositions !== false, visibilityMatrix: trainerKnowledge.visibilityMatrix !== false } : {}),
      },
      createdAt: new Date().toISOString(),
    };
    bar?.update(2, { step: 'writing artifact' });
    const artifact = await writeArtifact(values.out, config, imported.weights, { dtype, overwrite: values.overwrite });
    bar?.update(3, { step: 'done' });
    bar?.stop();

    const c = imported.config;
    const lines = [
      `imported ${file} (config from ${imported.configSource}): vocab ${c.vocabSize}, hidden ${c.hiddenSize}, ${c.numLayers} layers, ` +
        `${c.numHeads} heads, intermediate ${c.intermediateSize}, ${c.maxPositions} positions`,
      `heads: ${imported.numLabels > 0 ? `token classifier (${imported.numLabels} labels${imported.hasCrf ? ', CRF output layer' : ''})` : 'no token classifier'}, ${imported.hasMlmHead ? 'MLM head' : 'no MLM head'}`,
      ...(parity ? [`parity: ${parity.examples} examples, ${parity.tokens} tokens, max |difference| ${parity.maxAbsError.toExponential(2)} (relative ${parity.relativeError.toExponential(2)})`] : []),
      ...imported.unused.map((u) => `not imported: ${u.name} (${u.reason})`),
      ...imported.missing.map((m) => `missing (head left out): ${m}`),
      ...imported.notes.map((n) => `note: ${n}`),
      folded
        ? `tokenizer: full-width forms folded to ASCII (${folded === 'embeddings' ? 'the embeddings of "，：；（）" are the [UNK] row: trained on folded text' : folded})`
        : 'tokenizer: full-width forms kept, as Hugging Face tokenizes (pass --fold-full-width for a checkpoint trained on folded text)',
      `wrote ${artifact.dir} (${dtype}), version ${artifact.version.name}+${artifact.version.hash}`,
    ];
    console.log(lines.join('\n'));
    return 0;
  } catch (error) {
    bar?.stop();
    throw error;
  }
}
