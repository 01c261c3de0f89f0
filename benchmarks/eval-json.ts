/** The JSON that `rmbert eval --json` writes, as the benchmarks that run it read it. */
import type { Prf } from '../src/train/metrics.ts';

export interface EvalJson {
  model: string;
  evaluation: { strict: Prf; kbert: Prf; perType: Record<string, Prf> };
  baseline?: { evaluation: { strict: Prf; perType: Record<string, Prf> } };
  bootstrap?: { difference: number; low: number; high: number };
  surfaces?: { model: { seen: { recall: number }; unseen: { recall: number; gold: number } } };
  singleChar?: { shareOfPredictions: number; shareOfSingleChar: number };
  knowledge?: unknown;
  seconds: number;
}
