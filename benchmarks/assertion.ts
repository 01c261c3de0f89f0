/**
 * Assertion benchmark: `node --import tsx benchmarks/assertion.ts`
 *
 * Scores the ConText annotator (src/assertion, lexicon data/assertion/triggers.tsv) against the
 * hand-checked set data/assertion/eval.jsonl: precision / recall / F1 per property value, on the part
 * the rules were tuned on ("dev"), on the part labelled only after the rules were frozen ("heldout"),
 * and on both; every disagreement; throughput on one thread.
 *
 * Writes benchmarks/results/assertion.json and assertion.md.
 */
import { readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { AssertionAnnotator } from '../src/assertion/index.ts';
import type { Assertion, AssertionEntity } from '../src/assertion/index.ts';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const EVAL_FILE = path.join(ROOT, 'data/assertion/eval.jsonl');
const RESULTS = path.join(ROOT, 'benchmarks/results');
const THROUGHPUT_SECONDS = 3;

interface LabelledMention {
  part: 'dev' | 'heldout';
  sentenceIndex: number;
  text: string;
  entity: { start: number; end: number; type: string; text: string };
  polarity: Assertion['polarity'];
  certainty: Assertion['certainty'];
  temporality: Assertion['temporality'];
  experiencer: Assertion['experiencer'];
  comment?: string;
}

type Field = 'polarity' | 'certainty' | 'temporality' | 'experiencer';
const VALUES: { field: Field; value: string; name: string }[] = [
  { field: 'polarity', value: 'absent', name: 'absent' },
  { field: 'polarity', value: 'present', name: 'present' },
  { field: 'certainty', value: 'possible', name: 'possible' },
  { field: 'certainty', value: 'certain', name: 'certain' },
  { field: 'temporality', value: 'historical', name: 'historical' },
  { field: 'temporality', value: 'current', name: 'current' },
  { field: 'experiencer', value: 'other', name: 'other experiencer' },
  { field: 'experiencer', value: 'patient', name: 'patient' },
];

interface Score {
  support: number;
  predicted: number;
  truePositives: number;
  precision: number | null;
  recall: number | null;
  f1: number | null;
}

function score(gold: string[], predicted: string[], value: string): Score {
  let tp = 0;
  let support = 0;
  let predictedCount = 0;
  for (let i = 0; i < gold.length; i++) {
    if (gold[i] === value) support++;
    if (predicted[i] === value) predictedCount++;
    if (gold[i] === value && predicted[i] === value) tp++;
  }
  const precision = predictedCount === 0 ? null : tp / predictedCount;
  const recall = support === 0 ? null : tp / support;
  // F1 is undefined without gold examples: report null rather than a number that means nothing.
  const f1 = support === 0 ? null : tp === 0 ? 0 : (2 * precision! * recall!) / (precision! + recall!);
  return { support, predicted: predictedCount, truePositives: tp, precision, recall, f1 };
}

const round = (x: number | null, digits = 4): number | null => (x === null ? null : Number(x.toFixed(digits)));

function main(): void {
  const loadAtStart = os.loadavg();
  const mentions: LabelledMention[] = readFileSync(EVAL_FILE, 'utf8')
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => JSON.parse(l));

  // One annotate call per sentence, with all of that sentence's entities: how the stage would call it.
  const sentences = new Map<string, { text: string; entities: AssertionEntity[]; mentionIds: number[] }>();
  mentions.forEach((m, id) => {
    const key = `${m.part}:${m.sentenceIndex}`;
    let s = sentences.get(key);
    if (s === undefined) sentences.set(key, (s = { text: m.text, entities: [], mentionIds: [] }));
    s.entities.push({ start: m.entity.start, end: m.entity.end, type: m.entity.type });
    s.mentionIds.push(id);
  });

  const annotator = AssertionAnnotator.withDefaultLexicon();
  const predictions: Assertion[] = new Array(mentions.length);
  for (const s of sentences.values()) {
    const result = annotator.annotate(s.text, s.entities);
    s.mentionIds.forEach((id, k) => (predictions[id] = result[k]));
  }

  const scoresFor = (ids: number[]): Record<string, Score> => {
    const out: Record<string, Score> = {};
    for (const v of VALUES) {
      const s = score(
        ids.map((i) => mentions[i][v.field]),
        ids.map((i) => predictions[i][v.field]),
        v.value,
      );
      out[v.name] = { ...s, precision: round(s.precision), recall: round(s.recall), f1: round(s.f1) };
    }
    return out;
  };
  const allIds = mentions.map((_, i) => i);
  const parts = {
    all: allIds,
    dev: allIds.filter((i) => mentions[i].part === 'dev'),
    heldout: allIds.filter((i) => mentions[i].part === 'heldout'),
  };
  const scores: Record<string, { mentions: number; values: Record<string, Score> }> = Object.fromEntries(
    Object.entries(parts).map(([k, ids]) => [k, { mentions: ids.length, values: scoresFor(ids) }]),
  );

  const errors = allIds
    .map((i) => {
      const m = mentions[i];
      const p = predictions[i];
      const wrong = (['polarity', 'certainty', 'temporality', 'experiencer'] as Field[]).filter((f) => m[f] !== p[f]);
      if (wrong.length === 0) return undefined;
      return {
        part: m.part,
        sentenceIndex: m.sentenceIndex,
        entity: `${m.entity.text} [${m.entity.start},${m.entity.end}) ${m.entity.type}`,
        wrong: wrong.map((f) => `${f}: gold ${m[f]}, predicted ${p[f]}`),
        triggers: p.triggers.map((t) => `${t.text}@${t.start} ${t.property}`),
        text: m.text,
        comment: m.comment,
      };
    })
    .filter((e) => e !== undefined);

  // Throughput: the whole set annotated again and again on this one thread for a few seconds.
  const batch = [...sentences.values()];
  let rounds = 0;
  const startedAt = process.hrtime.bigint();
  let elapsed = 0;
  while (elapsed < THROUGHPUT_SECONDS) {
    for (const s of batch) annotator.annotate(s.text, s.entities);
    rounds++;
    elapsed = Number(process.hrtime.bigint() - startedAt) / 1e9;
  }
  const sentencesPerSecond = (rounds * batch.length) / elapsed;
  const entitiesPerSecond = (rounds * mentions.length) / elapsed;
  const loadAtEnd = os.loadavg();

  const f1 = (name: string): number | null => scores.all.values[name].f1;
  const summary = {
    mentions: mentions.length,
    absentF1: f1('absent'),
    possibleF1: f1('possible'),
    historicalF1: f1('historical'),
    otherExperiencerF1: f1('other experiencer'),
    sentencesPerSecond: Math.round(sentencesPerSecond),
    entitiesPerSecond: Math.round(entitiesPerSecond),
  };
  const result = {
    summary,
    command: 'node --import tsx benchmarks/assertion.ts',
    machine: {
      description: '2 cores, shared with model training',
      cpu: os.cpus()[0]?.model ?? 'unknown',
      loadavgAtStart: loadAtStart.map((x) => round(x, 2)),
      loadavgAtEnd: loadAtEnd.map((x) => round(x, 2)),
      node: process.version,
    },
    data: {
      file: 'data/assertion/eval.jsonl',
      sentences: sentences.size,
      note: 'dev: the part the lexicon and rules were tuned on; heldout: labelled after the rules were frozen. See data/assertion/PROVENANCE.md.',
    },
    throughput: { seconds: round(elapsed, 2), rounds, sentences: batch.length, sentencesPerSecond, entitiesPerSecond },
    scores,
    errors,
  };
  mkdirSync(RESULTS, { recursive: true });
  writeFileSync(path.join(RESULTS, 'assertion.json'), JSON.stringify(result, null, 2) + '\n');

  const cell = (x: number | null): string => (x === null ? 'n/a' : x.toFixed(3));
  const lines = [
    '# Assertion status (ConText for Chinese clinical text)',
    '',
    `Command: \`${result.command}\`. Machine: ${result.machine.description} (${result.machine.cpu}); load average ${loadAtStart.map((x) => x.toFixed(2)).join(' / ')} at start, ${loadAtEnd.map((x) => x.toFixed(2)).join(' / ')} at end.`,
    `Data: ${mentions.length} hand-checked entity mentions in ${sentences.size} training-split sentences (data/assertion/eval.jsonl; dev ${parts.dev.length}, held-out ${parts.heldout.length}).`,
    '',
    '| value | part | support | predicted | precision | recall | F1 |',
    '|---|---|---|---|---|---|---|',
  ];
  for (const v of VALUES) {
    for (const part of ['all', 'dev', 'heldout'] as const) {
      const s = scores[part].values[v.name];
      lines.push(`| ${v.name} | ${part} | ${s.support} | ${s.predicted} | ${cell(s.precision)} | ${cell(s.recall)} | ${cell(s.f1)} |`);
    }
  }
  lines.push(
    '',
    `Throughput, one thread: ${Math.round(sentencesPerSecond).toLocaleString('en')} sentences/s, ${Math.round(entitiesPerSecond).toLocaleString('en')} entities/s (the set annotated ${rounds} times in ${elapsed.toFixed(1)} s).`,
    `Errors: ${errors.length} mentions with at least one wrong property (listed in assertion.json).`,
    '',
  );
  writeFileSync(path.join(RESULTS, 'assertion.md'), lines.join('\n'));
  console.log(lines.join('\n'));
}

main();
