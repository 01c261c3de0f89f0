/**
 * Turns at the inference engine for the stage's two lanes. The normal lane's micro-batches and the
 * heavy-document lane share one model (and, on 2 cores, the CPU). Engine calls take turns, one at a
 * time; the heavy lane asks for its turns in slices of a few windows, and a waiting normal call always
 * goes before a waiting heavy slice, so a normal micro-batch waits for at most one slice of a heavy
 * document, never for the whole document.
 */
import { delegatingModel, type ModelRuntime } from './ports.ts';

export type Lane = 'normal' | 'heavy';

/** Windows of a heavy document classified per turn (a slice costs a few hundred ms at most on 2 cores). */
export const HEAVY_SLICE_WINDOWS = 32;

export class EngineTurns {
  private busy = false;
  private readonly waiting: Record<Lane, (() => void)[]> = { normal: [], heavy: [] };

  /** Runs `fn` in its turn: after the call in progress, normal calls before heavy ones. */
  async run<T>(lane: Lane, fn: () => Promise<T>): Promise<T> {
    if (this.busy) await new Promise<void>((resolve) => this.waiting[lane].push(resolve));
    else this.busy = true;
    try {
      return await fn();
    } finally {
      const next = this.waiting.normal.shift() ?? this.waiting.heavy.shift();
      if (next) next();
      else this.busy = false;
    }
  }

  /** Calls waiting for a turn (for tests and metrics). */
  pending(): Record<Lane, number> {
    return { normal: this.waiting.normal.length, heavy: this.waiting.heavy.length };
  }
}

/** The model with its engine calls taken in turns: whole for the normal lane, in slices for the heavy one. */
export function onTurns(model: ModelRuntime, turns: EngineTurns, lane: Lane, sliceWindows = HEAVY_SLICE_WINDOWS): ModelRuntime {
  return delegatingModel(model, {
    classify: async (sentences) => {
      if (lane === 'normal') return turns.run('normal', () => model.classify(sentences));
      const out: Float32Array[] = [];
      for (let i = 0; i < sentences.length; i += sliceWindows) {
        const slice = sentences.slice(i, i + sliceWindows);
        out.push(...(await turns.run('heavy', () => model.classify(slice))));
      }
      return out;
    },
  });
}
