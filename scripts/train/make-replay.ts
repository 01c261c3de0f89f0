/**
 * Writes the trainer's shipped replay data from the medical training split (never dev or test):
 *   data/replay/medical-train-sample.tsv   a seeded sample of training sentences, mixed into every
 *                                          feedback round so the model does not forget (K-BERT NER TSV)
 *   data/replay/medical-train-lexicon.tsv  every entity surface of the whole training split with its
 *                                          type counts (surface<TAB>type<TAB>count), which the label
 *                                          check compares feedback with
 * Usage: node --import tsx scripts/train/make-replay.ts [TRAIN_TSV] [SAMPLE_SIZE]
 */
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { readKbertTsv, subsetSentences } from '../../src/train/datasets.ts';
import { spansFromBio } from '../../src/train/metrics.ts';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const trainFile = process.argv[2] ?? path.join(root, '../shared/data/kbert-medical-ner/train.tsv');
const size = Number(process.argv[3] ?? 1000);
const train = readKbertTsv(trainFile).sentences;
const sample = subsetSentences(train, size, 2017);
const tsv = ['text_a\tlabel', ...sample.map((s) => `${s.chars.join(' ')}\t${s.labels.join(' ')}`)].join('\n') + '\n';
writeFileSync(path.join(root, 'data/replay/medical-train-sample.tsv'), tsv);

const counts = new Map<string, number>();
for (const s of train) {
  for (const e of spansFromBio(s.labels)) {
    const key = `${s.chars.slice(e.start, e.end).join('')}\t${e.type}`;
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
}
const rows = [...counts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([k, n]) => `${k}\t${n}`);
const lexicon = ['surface\ttype\tcount', ...rows].join('\n') + '\n';
writeFileSync(path.join(root, 'data/replay/medical-train-lexicon.tsv'), lexicon);
const sha = (t: string) => createHash('sha256').update(t).digest('hex');
console.log(JSON.stringify({ trainSentences: train.length, sample: sample.length, sampleSha256: sha(tsv), lexiconRows: rows.length, lexiconSha256: sha(lexicon) }));
