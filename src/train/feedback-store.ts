/**
 * The trainer's own store of clinician feedback, on disk: every usable correction is written here
 * (and fsynced) before its Kafka offset is committed, so feedback survives refused rounds, failed
 * rounds and restarts until someone prunes it. One entry per document: the latest correction wins.
 *
 * The store also holds the holdout. A document's side (train or holdout) is chosen once, when the
 * document is first stored, and never changes; the choice is stratified by what the document
 * corrects (its rarest entity surface and type), so each corrected term keeps about the configured
 * share of its documents aside, instead of whatever a hash of the id happens to give a small set.
 *
 * One JSON file, rewritten atomically (temporary file, fsync, rename, fsync of the directory): the
 * store holds at most a few thousand documents, and a partial write can never be read back.
 * One trainer per state directory.
 */
import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, RmBertError } from '../errors/index.ts';
import type { FeedbackDocument, GoldSpan } from './feedback.ts';

export const STORE_FILE = 'feedback-store.json';
/** Holds the pid of the trainer that has the store open for writing. */
export const LOCK_FILE = 'trainer.lock';
const FORMAT = 1;

/** The store cannot be read or written (a disk problem is worth retrying; a corrupt file is not). */
export class FeedbackStoreError extends RmBertError {
  constructor(message: string, options: { cause?: unknown; retriable?: boolean } = {}) {
    super(message, { cause: options.cause, retriable: options.retriable ?? false });
    this.name = 'FeedbackStoreError';
  }
}

export type FeedbackSplit = 'train' | 'holdout';
/** active: trained on (train side) or scored on (holdout side); quarantined: contradicts what the model was taught, waits for review; released: a reviewer accepted it anyway. */
export type FeedbackStatus = 'active' | 'quarantined' | 'released';

export interface StoredFeedback {
  documentId: string;
  text: string;
  entities: GoldSpan[];
  createdAt: number;
  annotator?: string;
  modelVersionSeen?: string;
  /** Order of storage: every new or replacing correction gets the next number. */
  seq: number;
  storedAt: number;
  split: FeedbackSplit;
  status: FeedbackStatus;
  /** Why it is quarantined (these name entity surfaces: shown by `rmbert train feedback list`, never logged). */
  problems?: string[];
  /** Rounds that trained on it (train side) and the version that first learned it. */
  rounds: number;
  promotedIn?: string;
}

export interface RoundRecord {
  at: number;
  outcome: string;
  /** Documents stored up to this sequence number were available to the round. */
  seq: number;
  version?: string;
  reasons?: string[];
}

interface StoreFile {
  format: number;
  nextSeq: number;
  /** Sequence number up to which documents were seen by a round (the min-examples trigger counts those after it). */
  lastRoundSeq: number;
  /** Holdout strata: documents and held-out documents per `type|surface` key. */
  strata: Record<string, { total: number; held: number }>;
  documents: StoredFeedback[];
  /** The last rounds, newest last (at most 100). */
  rounds: RoundRecord[];
}

export interface UpsertResult {
  outcome: 'added' | 'replaced' | 'stale' | 'unchanged';
  document: StoredFeedback;
}

/** Checks a correction against what the model was taught; returns the contradictions (empty: none). */
export type LabelCheck = (document: FeedbackDocument) => string[];

const NO_ENTITY = '(none)';

function strataKeys(d: FeedbackDocument): string[] {
  const keys = [...new Set(d.entities.map((e) => `${e.type}|${e.text}`))].sort();
  return keys.length > 0 ? keys : [NO_ENTITY];
}

export interface StoreCounts {
  documents: number;
  train: number;
  holdout: number;
  quarantined: number;
  /** Usable training documents stored after the last round. */
  newSinceRound: number;
  /** Documents of any status stored after the last round. */
  newAnySinceRound: number;
}

export class FeedbackStore {
  private data: StoreFile;
  private readonly byId = new Map<string, StoredFeedback>();
  readonly file: string;

  private constructor(
    readonly dir: string,
    data: StoreFile,
    private readonly holdoutPercent: number,
  ) {
    this.file = path.join(dir, STORE_FILE);
    this.data = data;
    for (const d of data.documents) this.byId.set(d.documentId, d);
  }

  /** Opens (or creates) the store in `dir`. */
  static open(dir: string, options: { holdoutPercent: number; create?: boolean }): FeedbackStore {
    const file = path.join(dir, STORE_FILE);
    if (!existsSync(file)) {
      if (options.create === false) throw new ConfigError([`trainer.stateDir: no feedback store at ${file}`]);
      try {
        mkdirSync(dir, { recursive: true });
      } catch (error) {
        throw new FeedbackStoreError(`cannot create the trainer's state directory ${dir}: ${(error as Error).message}`, { cause: error });
      }
      const store = new FeedbackStore(dir, { format: FORMAT, nextSeq: 1, lastRoundSeq: 0, strata: {}, documents: [], rounds: [] }, options.holdoutPercent);
      store.save();
      return store;
    }
    let data: StoreFile;
    try {
      data = JSON.parse(readFileSync(file, 'utf8')) as StoreFile;
    } catch (error) {
      throw new FeedbackStoreError(`cannot read the feedback store ${file}: ${(error as Error).message}`, { cause: error });
    }
    if (data.format !== FORMAT || !Array.isArray(data.documents)) throw new FeedbackStoreError(`the feedback store ${file} has format ${String(data.format)}; this trainer reads format ${FORMAT}`);
    return new FeedbackStore(dir, data, options.holdoutPercent);
  }

  /** Writes the whole store atomically; returns once it is on disk. */
  save(): void {
    const tmp = `${this.file}.tmp-${process.pid}`;
    try {
      const fd = openSync(tmp, 'w');
      try {
        writeSync(fd, JSON.stringify(this.data));
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(tmp, this.file);
      const dirFd = openSync(this.dir, 'r');
      try {
        fsyncSync(dirFd);
      } finally {
        closeSync(dirFd);
      }
    } catch (error) {
      throw new FeedbackStoreError(`cannot write the feedback store ${this.file}: ${(error as Error).message}`, { cause: error, retriable: true });
    }
  }

  /**
   * The side a new document goes to: it is held out when its stratum (its rarest `type|surface` so
   * far) has fewer held-out documents than its share, rounded: round(percent/100 x documents). A
   * stratum's first documents train; the share is reached as it grows.
   */
  private chooseSplit(d: FeedbackDocument): FeedbackSplit {
    const keys = strataKeys(d);
    const strata = this.data.strata;
    const rarest = keys.reduce((a, b) => ((strata[b]?.total ?? 0) < (strata[a]?.total ?? 0) ? b : a));
    const s = strata[rarest] ?? { total: 0, held: 0 };
    const held = s.held < Math.round((this.holdoutPercent / 100) * (s.total + 1));
    for (const k of keys) {
      const e = (strata[k] ??= { total: 0, held: 0 });
      e.total++;
      if (held) e.held++;
    }
    return held ? 'holdout' : 'train';
  }

  /**
   * Stores a valid correction (call save() after a batch). A later createdAt wins; an equal one
   * replaces only when the content differs (a re-delivered record changes nothing).
   */
  upsert(d: FeedbackDocument & { annotator?: string; modelVersionSeen?: string }, now: number, check?: LabelCheck): UpsertResult {
    const current = this.byId.get(d.documentId);
    if (current) {
      if (d.createdAt < current.createdAt) return { outcome: 'stale', document: current };
      // The stored spans only (a Feedback v2 entity also carries the annotator's assertion, not kept here).
      const spans = d.entities.map((e) => ({ start: e.start, end: e.end, text: e.text, type: e.type }));
      const same = current.createdAt === d.createdAt && current.text === d.text && JSON.stringify(current.entities) === JSON.stringify(spans);
      if (same) return { outcome: 'unchanged', document: current };
    }
    const problems = check ? check(d) : [];
    const entry: StoredFeedback = {
      documentId: d.documentId,
      text: d.text,
      entities: d.entities.map((e) => ({ start: e.start, end: e.end, text: e.text, type: e.type })),
      createdAt: d.createdAt,
      ...(d.annotator ? { annotator: d.annotator } : {}),
      ...(d.modelVersionSeen ? { modelVersionSeen: d.modelVersionSeen } : {}),
      seq: this.data.nextSeq++,
      storedAt: now,
      // A replaced document keeps its side: the holdout never leaks into training.
      split: current ? current.split : this.chooseSplit(d),
      status: problems.length > 0 ? 'quarantined' : 'active',
      ...(problems.length > 0 ? { problems } : {}),
      rounds: 0,
    };
    if (current) this.data.documents[this.data.documents.indexOf(current)] = entry;
    else this.data.documents.push(entry);
    this.byId.set(d.documentId, entry);
    return { outcome: current ? 'replaced' : 'added', document: entry };
  }

  /**
   * Marks the store as held by this process: the trainer keeps the store in memory and rewrites it,
   * so a change made beside it (prune, release) would be lost. Throws when a live process holds it.
   */
  lock(): void {
    const holder = lockHolder(this.dir);
    if (holder !== null && holder !== process.pid) throw new FeedbackStoreError(`the feedback store ${this.dir} is held by process ${holder} (a running trainer); stop it first`);
    writeFileSync(path.join(this.dir, LOCK_FILE), `${process.pid}\n`);
  }

  unlock(): void {
    if (lockHolder(this.dir) === process.pid) rmSync(path.join(this.dir, LOCK_FILE), { force: true });
  }

  get(documentId: string): StoredFeedback | undefined {
    return this.byId.get(documentId);
  }

  /** Every document, in storage order. */
  all(): readonly StoredFeedback[] {
    return [...this.data.documents].sort((a, b) => a.seq - b.seq);
  }

  private usable(d: StoredFeedback): boolean {
    return d.status !== 'quarantined';
  }

  /** Training documents a round uses: usable, train side, sorted by document id (the same order whatever the arrival order). */
  training(): StoredFeedback[] {
    return this.data.documents.filter((d) => d.split === 'train' && this.usable(d)).sort((a, b) => (a.documentId < b.documentId ? -1 : a.documentId > b.documentId ? 1 : 0));
  }

  /** Held-out documents, usable, sorted by document id. */
  holdout(): StoredFeedback[] {
    return this.data.documents.filter((d) => d.split === 'holdout' && this.usable(d)).sort((a, b) => (a.documentId < b.documentId ? -1 : a.documentId > b.documentId ? 1 : 0));
  }

  get lastRoundSeq(): number {
    return this.data.lastRoundSeq;
  }

  /** The highest sequence number stored so far. */
  get seq(): number {
    return this.data.nextSeq - 1;
  }

  counts(): StoreCounts {
    const c: StoreCounts = { documents: 0, train: 0, holdout: 0, quarantined: 0, newSinceRound: 0, newAnySinceRound: 0 };
    for (const d of this.data.documents) {
      c.documents++;
      const isNew = d.seq > this.data.lastRoundSeq;
      if (isNew) c.newAnySinceRound++;
      if (!this.usable(d)) {
        c.quarantined++;
        continue;
      }
      if (d.split === 'holdout') c.holdout++;
      else {
        c.train++;
        if (isNew) c.newSinceRound++;
      }
    }
    return c;
  }

  /** The oldest storage time among documents no round has seen yet, or null. */
  oldestNewAt(): number | null {
    let oldest: number | null = null;
    for (const d of this.data.documents) if (d.seq > this.data.lastRoundSeq && (oldest === null || d.storedAt < oldest)) oldest = d.storedAt;
    return oldest;
  }

  /** Records a finished round: documents up to `seq` were seen; `trained` were trained on (and learned, if promoted). Saves. */
  recordRound(r: RoundRecord, trained: readonly string[]): void {
    this.data.lastRoundSeq = Math.max(this.data.lastRoundSeq, r.seq);
    for (const id of trained) {
      const d = this.byId.get(id);
      if (!d) continue;
      d.rounds++;
      if (r.outcome === 'promoted' && r.version && !d.promotedIn) d.promotedIn = r.version;
    }
    this.data.rounds.push(r);
    if (this.data.rounds.length > 100) this.data.rounds.splice(0, this.data.rounds.length - 100);
    this.save();
  }

  rounds(): readonly RoundRecord[] {
    return this.data.rounds;
  }

  /** Accepts quarantined documents for training (a reviewer's decision); returns how many changed. Saves. */
  release(ids: readonly string[]): number {
    let n = 0;
    for (const id of ids) {
      const d = this.byId.get(id);
      if (d?.status === 'quarantined') {
        d.status = 'released';
        n++;
      }
    }
    if (n > 0) this.save();
    return n;
  }

  /** Removes the documents `which` selects; returns how many. Their holdout strata counts stay (the split of the others does not move). Saves. */
  prune(which: (d: StoredFeedback) => boolean): number {
    const before = this.data.documents.length;
    this.data.documents = this.data.documents.filter((d) => !which(d));
    this.byId.clear();
    for (const d of this.data.documents) this.byId.set(d.documentId, d);
    const removed = before - this.data.documents.length;
    if (removed > 0) this.save();
    return removed;
  }
}

/** The pid holding the store in `dir`, or null (no lock, or its process is gone). */
export function lockHolder(dir: string): number | null {
  let pid: number;
  try {
    pid = Number(readFileSync(path.join(dir, LOCK_FILE), 'utf8').trim());
  } catch {
    return null;
  }
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    process.kill(pid, 0);
    return pid;
  } catch (error) {
    // EPERM: the process exists under another user.
    return (error as NodeJS.ErrnoException).code === 'EPERM' ? pid : null;
  }
}
