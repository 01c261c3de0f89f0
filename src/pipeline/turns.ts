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

/** Longest a heavy slice or piece waits for the normal lane to be idle, so that the heavy lane always moves on. */
export const HEAVY_MAX_WAIT_MS = 2000;

export class EngineTurns {
  private busy = false;
  private readonly waiting: Record<Lane, (() => void)[]> = { normal: [], heavy: [] };
  /** Normal-lane micro-batches in progress (fetched, not yet committed). */
  private normalWork = 0;
  private idleWaiters: (() => void)[] = [];

  constructor(private readonly heavyMaxWaitMs = HEAVY_MAX_WAIT_MS) {}

  /**
   * The normal lane has work in progress (end it with the function returned). Its commits are broker
   * round trips, each needing the event loop: heavy work squeezed in between them (a piece's sentence
   * trees, a slice's decoding) would delay every step, so heavy work waits meanwhile (at most
   * heavyMaxWaitMs at a time).
   */
  normalBusy(): () => void {
    this.normalWork++;
    let ended = false;
    return () => {
      if (ended) return;
      ended = true;
      this.normalWork--;
      if (this.normalWork === 0) {
        const waiters = this.idleWaiters;
        this.idleWaiters = [];
        for (const w of waiters) w();
      }
    };
  }

  /** Resolves when the normal lane has no work in progress, or after heavyMaxWaitMs. */
  async normalIdle(): Promise<void> {
    if (this.normalWork === 0) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      this.idleWaiters.push(resolve);
      timer = setTimeout(resolve, this.heavyMaxWaitMs);
    });
    clearTimeout(timer);
  }

  /** Runs `fn` in its turn: after the call in progress, normal calls before heavy ones (and heavy ones when the normal lane is idle). */
  async run<T>(lane: Lane, fn: () => Promise<T>): Promise<T> {
    if (lane === 'heavy') await this.normalIdle();
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
