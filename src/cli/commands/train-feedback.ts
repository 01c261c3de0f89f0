/**
 * `rmbert train feedback`: look into and tend the trainer's feedback store (src/train/feedback-store.ts)
 * without Kafka: list, export, prune, release quarantined documents.
 */
import { writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { loadTrainerConfig } from '../../config/trainer.ts';
import { ConfigError, RmBertError } from '../../errors/index.ts';
import { FeedbackStore, lockHolder, type StoredFeedback } from '../../train/feedback-store.ts';

const HELP = `usage: rmbert train feedback <command> [options]

The trainer's feedback store (--state-dir, RMBERT_TRAINER_STATE_DIR, default ./trainer-state): every
usable correction read from the feedback topic, the latest per document, with its side (train or
holdout) and status (active; quarantined: its labels contradict the knowledge graph or the training
set, not trained on; released: a reviewer accepted it).

commands:
  list [--quarantined] [--split train|holdout] [--json]
      one line per document: id, side, status, entities, rounds trained in, the version that first
      learned it, and for quarantined documents the contradictions (they quote entity text)
  export [--out FILE]
      every stored document as JSON lines (text and entities included) on stdout or into FILE
  prune (--id ID ... | --promoted | --quarantined | --older-than-days N)
      remove documents: by id, those a promoted model learned, the quarantined ones, or those stored
      more than N days ago; the other documents keep their side
  release --id ID ...
      train on quarantined documents after review

prune and release need the trainer stopped (it holds the store in memory and would write over the
change); list and export can run beside it.

options:
  --state-dir DIR
      the trainer's state directory
  -h, --help
      this text

exit status: 0 done, 1 failed, 2 bad usage or configuration.
`;

function line(d: StoredFeedback): string {
  const parts = [
    d.documentId,
    d.split,
    d.status,
    `entities=${d.entities.length}`,
    `rounds=${d.rounds}`,
    `learnedBy=${d.promotedIn ?? '-'}`,
    `createdAt=${new Date(d.createdAt).toISOString()}`,
  ];
  if (d.problems?.length) parts.push(`problems=${d.problems.join(' | ')}`);
  return parts.join('\t');
}

export async function run(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: argv,
      options: {
        'state-dir': { type: 'string' },
        quarantined: { type: 'boolean' },
        split: { type: 'string' },
        json: { type: 'boolean' },
        out: { type: 'string' },
        id: { type: 'string', multiple: true },
        promoted: { type: 'boolean' },
        'older-than-days': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: true,
    });
  } catch (error) {
    console.error(`rmbert train feedback: ${(error as Error).message}\nRun \`rmbert train feedback --help\` for the options.`);
    return 2;
  }
  const v = parsed.values as Record<string, string | boolean | string[] | undefined>;
  const [command, ...rest] = parsed.positionals;
  if (v.help || !command) {
    console.log(HELP);
    return v.help ? 0 : 2;
  }
  if (rest.length > 0) {
    console.error(`rmbert train feedback: unexpected arguments: ${rest.join(' ')}`);
    return 2;
  }
  try {
    const trainer = loadTrainerConfig(typeof v['state-dir'] === 'string' ? { 'state-dir': v['state-dir'] } : {});
    const store = FeedbackStore.open(trainer.stateDir, { holdoutPercent: trainer.holdoutPercent, create: false });
    const ids = (v.id as string[] | undefined) ?? [];
    switch (command) {
      case 'list': {
        if (v.split !== undefined && v.split !== 'train' && v.split !== 'holdout') throw new ConfigError([`--split: "${String(v.split)}" is not train or holdout`]);
        const docs = store.all().filter((d) => (!v.quarantined || d.status === 'quarantined') && (v.split === undefined || d.split === v.split));
        for (const d of docs) console.log(v.json ? JSON.stringify({ ...d, text: undefined }) : line(d));
        const c = store.counts();
        console.error(`${docs.length} listed; store: ${c.documents} documents (train ${c.train}, holdout ${c.holdout}, quarantined ${c.quarantined}), ${c.newAnySinceRound} stored since the last round`);
        return 0;
      }
      case 'export': {
        const text = store.all().map((d) => JSON.stringify(d)).join('\n') + (store.all().length ? '\n' : '');
        if (typeof v.out === 'string') writeFileSync(v.out, text);
        else process.stdout.write(text);
        return 0;
      }
      case 'prune':
      case 'release': {
        const holder = lockHolder(trainer.stateDir);
        if (holder !== null) throw new ConfigError([`the trainer (process ${holder}) holds ${trainer.stateDir}; stop it before ${command}`]);
        if (command === 'release') {
          if (ids.length === 0) throw new ConfigError(['release: give --id ID for each document to release']);
          console.log(`${store.release(ids)} documents released`);
          return 0;
        }
        const days = v['older-than-days'] === undefined ? null : Number(v['older-than-days']);
        if (days !== null && !(days >= 0)) throw new ConfigError([`--older-than-days: "${String(v['older-than-days'])}" is not a number of days`]);
        const selectors = [ids.length > 0, Boolean(v.promoted), Boolean(v.quarantined), days !== null].filter(Boolean).length;
        if (selectors !== 1) throw new ConfigError(['prune: give exactly one of --id, --promoted, --quarantined, --older-than-days']);
        const idSet = new Set(ids);
        const cutoff = days === null ? 0 : Date.now() - days * 86_400_000;
        const removed = store.prune((d) =>
          ids.length > 0 ? idSet.has(d.documentId) : v.promoted ? d.promotedIn !== undefined : v.quarantined ? d.status === 'quarantined' : d.storedAt < cutoff,
        );
        console.log(`${removed} documents pruned`);
        return 0;
      }
      default:
        console.error(`rmbert train feedback: unknown command "${command}" (list, export, prune, release)`);
        return 2;
    }
  } catch (error) {
    if (error instanceof ConfigError) {
      console.error(`rmbert train feedback: ${error.message}`);
      return 2;
    }
    if (error instanceof RmBertError) {
      console.error(`rmbert train feedback: ${error.message}`);
      return 1;
    }
    throw error;
  }
}
