/**
 * `rmbert terms`: writes a corpus's training-split entity list as a .spo term list (src/train/terms.ts),
 * the graph a model trained with `rmbert features --terms` expects beside its main graph.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../errors/index.ts';
import { defaultDataDir, loadCorpus } from '../../train/datasets.ts';
import { collectTerms, dropTerms, TERM_RELATION, termsToSpo } from '../../train/terms.ts';

export const summary = "write a corpus's training-split entity list as a .spo term list (knowledge for --terms models)";

const HELP = `usage: rmbert terms --corpus medical|msra --out FILE.spo [--drop F --seed N] [--data-dir DIR]

Every entity surface of the corpus's TRAINING split (never dev or test) with its most frequent type, one
triple per surface: surface<TAB>${TERM_RELATION}<TAB>type (部位, 症状, 疾病, 检查, 治疗; 人名, 机构, 地名 for msra).
Load it beside the main graph: \`rmbert kg load FILE.spo\` for the stage (Neo4j), \`--extra-kg FILE.spo\`
for \`rmbert eval\` and \`rmbert features\`.

  --corpus NAME    medical or msra
  --out FILE       the .spo file to write
  --drop F         leave out a seeded random fraction F of the surfaces (default 0: the whole list)
  --seed N         seed of --drop (default 1)
  --data-dir DIR   shared data folder (default ../shared/data)
  -h, --help       this text
`;

export async function run(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    allowPositionals: false,
    options: {
      corpus: { type: 'string' },
      out: { type: 'string' },
      drop: { type: 'string' },
      seed: { type: 'string' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const problems: string[] = [];
  if (values.corpus !== 'medical' && values.corpus !== 'msra') problems.push('--corpus must be medical or msra');
  if (!values.out) problems.push('--out FILE.spo is required');
  const drop = Number(values.drop ?? 0);
  if (!(drop >= 0 && drop < 1)) problems.push(`--drop must be a number in [0, 1) (got "${values.drop}")`);
  const seed = Number(values.seed ?? 1);
  if (!Number.isInteger(seed) || seed < 0) problems.push(`--seed must be a non-negative integer (got "${values.seed}")`);
  if (problems.length) throw new ConfigError(problems);
  const corpus = loadCorpus(values.corpus as 'medical' | 'msra', path.resolve(values['data-dir'] ?? defaultDataDir()));
  const all = collectTerms(corpus.train.sentences, corpus.types);
  const terms = drop > 0 ? dropTerms(all, drop, seed) : all;
  writeFileSync(path.resolve(values.out!), termsToSpo(terms));
  process.stderr.write(`${terms.size} of ${all.size} surfaces of ${corpus.train.name} written to ${values.out}\n`);
  return 0;
}
