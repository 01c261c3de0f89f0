/**
 * RecAdam (recall learning; paper eqs. 9-15), applied in the update as the RecAdam reference
 * implementation does rather than through the loss:
 *
 *   m, v          Adam moments of the TASK gradient only
 *   theta'      = theta - lr_t * lambda(t) * m_hat / (sqrt(v_hat) + eps)
 *   theta_new   = theta' - lr_t * (w - lambda(t)) * gamma * (theta' - theta*)      (pretrained params only)
 *   theta_new  -= lr_t * weightDecay * theta_new                                   (if enabled, decoupled)
 *
 * with lambda(t) the annealing coefficient (sigmoid 1/(1+exp(-k(t-t0))), linear min(1, t/t0) or
 * constant, all times the weight w, default 1), t the 1-based update count, lr_t the scheduled
 * learning rate, gamma the quadratic-penalty coefficient (default 5000), theta* a frozen copy of the
 * pretrained weights taken when the optimizer is built. Parameters that are not pretrained (the new
 * classification head) take plain Adam steps: no lambda, no penalty. As in the reference, the penalty
 * is evaluated at the parameter after its Adam move.
 *
 * Plain Adam is the same class with `plainAdam()` options (lambda = 1, no penalty), so that the
 * -RECALL ablation differs from RM-BERT in the recall term alone.
 */
import * as tf from '@tensorflow/tfjs-core';
import type { WeightMap } from '../model/types.ts';

export type AnnealKind = 'sigmoid' | 'linear' | 'constant';

export interface AnnealOptions {
  kind: AnnealKind;
  /** Steepness of the sigmoid (paper: 0.01 medical, 0.005 MSRA). */
  k: number;
  /** Step at which lambda = w/2 (sigmoid) or reaches w (linear) (paper: 1000 medical, 250 MSRA). */
  t0: number;
  /** Upper value of lambda (RecAdam's anneal_w); default 1. */
  weight?: number;
}

/** lambda(t): the weight of the task step at update t (1-based). */
export function annealLambda(step: number, a: AnnealOptions): number {
  const w = a.weight ?? 1;
  switch (a.kind) {
    case 'sigmoid':
      return w / (1 + Math.exp(-a.k * (step - a.t0)));
    case 'linear':
      return a.t0 > 0 ? Math.min(1, step / a.t0) * w : w;
    case 'constant':
      return w;
  }
}

export interface RecAdamOptions {
  /** Base learning rate, or a schedule of the 1-based update count. */
  learningRate: number | ((step: number) => number);
  beta1?: number;
  beta2?: number;
  epsilon?: number;
  /** Decoupled weight decay (AdamW style); 0 = off. */
  weightDecay?: number;
  /** Names excluded from weight decay; default: biases and LayerNorm parameters. */
  noDecay?: (name: string) => boolean;
  anneal: AnnealOptions;
  /** Quadratic-penalty coefficient gamma; 0 removes the recall term (lambda still scales the task step). */
  gamma?: number;
  /**
   * Which parameters are pretrained (annealed towards theta*). Default: every name that does not
   * start with "classifier." (the new token-classification head).
   */
  isPretrained?: (name: string) => boolean;
}

/** Options for plain Adam through the same code path (-RECALL ablation, `--optimizer adam`). */
export function plainAdam(learningRate: RecAdamOptions['learningRate'], rest: Partial<RecAdamOptions> = {}): RecAdamOptions {
  return { ...rest, learningRate, anneal: { kind: 'constant', k: 0, t0: 0, weight: 1 }, gamma: 0 };
}

export const DEFAULT_GAMMA = 5000;

/** Serializable optimizer state for checkpoints: update count, moments, and theta*. */
export interface RecAdamState {
  step: number;
  m: WeightMap;
  v: WeightMap;
  anchors: WeightMap;
}

interface Slot {
  variable: tf.Variable;
  m: tf.Variable;
  v: tf.Variable;
  /** Annealed: lambda scales the task step. */
  pretrained: boolean;
  /** theta* (frozen), for pretrained parameters when the penalty is on. */
  anchor: tf.Variable | null;
  decay: boolean;
}

const defaultNoDecay = (name: string) => name.endsWith('.bias') || name.includes('LayerNorm');
const defaultIsPretrained = (name: string) => !name.startsWith('classifier.');

export class RecAdam {
  readonly options: Readonly<Required<Omit<RecAdamOptions, 'noDecay' | 'isPretrained'>>>;
  private readonly slots = new Map<string, Slot>();
  private t = 0;

  constructor(variables: ReadonlyMap<string, tf.Variable>, options: RecAdamOptions) {
    this.options = {
      learningRate: options.learningRate,
      beta1: options.beta1 ?? 0.9,
      beta2: options.beta2 ?? 0.999,
      epsilon: options.epsilon ?? 1e-6,
      weightDecay: options.weightDecay ?? 0,
      anneal: options.anneal,
      gamma: options.gamma ?? DEFAULT_GAMMA,
    };
    const isPretrained = options.isPretrained ?? defaultIsPretrained;
    const noDecay = options.noDecay ?? defaultNoDecay;
    for (const [name, variable] of variables) {
      const pretrained = isPretrained(name);
      this.slots.set(name, {
        variable,
        pretrained,
        m: zeroVariable(variable),
        v: zeroVariable(variable),
        // Only needed when the penalty is on; a copy per parameter doubles the memory of the model.
        anchor: pretrained && this.options.gamma !== 0 ? variableFrom(variable) : null,
        decay: !noDecay(name),
      });
    }
  }

  /** Updates applied so far. */
  get step(): number {
    return this.t;
  }

  /** Names annealed towards theta*. */
  get pretrainedNames(): string[] {
    return [...this.slots].filter(([, s]) => s.pretrained).map(([n]) => n);
  }

  learningRateAt(step: number): number {
    const lr = this.options.learningRate;
    return typeof lr === 'number' ? lr : lr(step);
  }

  lambdaAt(step: number): number {
    return annealLambda(step, this.options.anneal);
  }

  /**
   * One update from task gradients (name -> tensor of the variable's shape). Parameters without a
   * gradient are left alone this step (their moments too). Does not dispose `grads`.
   */
  applyGradients(grads: ReadonlyMap<string, tf.Tensor> | Record<string, tf.Tensor>): void {
    const entries = grads instanceof Map ? [...grads] : Object.entries(grads);
    for (const [name] of entries) {
      if (!this.slots.has(name)) throw new RangeError(`gradient for unknown parameter ${name}`);
    }
    const t = ++this.t;
    const { beta1, beta2, epsilon, weightDecay, gamma } = this.options;
    const lr = this.learningRateAt(t);
    const lambda = this.lambdaAt(t);
    const w = this.options.anneal.weight ?? 1;
    const bc1 = 1 - beta1 ** t;
    const bc2 = 1 - beta2 ** t;
    for (const [name, g] of entries) {
      const s = this.slots.get(name)!;
      tf.tidy(() => {
        const m = tf.add(tf.mul(s.m, beta1), tf.mul(g, 1 - beta1));
        const v = tf.add(tf.mul(s.v, beta2), tf.mul(tf.square(g), 1 - beta2));
        s.m.assign(m);
        s.v.assign(v);
        const direction = tf.div(tf.div(m, bc1), tf.add(tf.sqrt(tf.div(v, bc2)), epsilon));
        let theta: tf.Tensor;
        if (s.pretrained) {
          theta = tf.sub(s.variable, tf.mul(direction, lr * lambda));
          const pull = lr * (w - lambda) * gamma;
          if (s.anchor && pull !== 0) theta = tf.sub(theta, tf.mul(tf.sub(theta, s.anchor), pull));
        } else {
          theta = tf.sub(s.variable, tf.mul(direction, lr));
        }
        if (weightDecay > 0 && s.decay) theta = tf.sub(theta, tf.mul(theta, lr * weightDecay));
        s.variable.assign(theta);
      });
    }
  }

  /**
   * ||theta - theta*||_1 over the pretrained parameters (paper fig. 7). One scalar read back; call it
   * on logging steps only. 0 when gamma = 0 (no anchors are kept).
   */
  async distanceL1(): Promise<number> {
    const anchored = [...this.slots.values()].filter((s) => s.anchor);
    if (anchored.length === 0) return 0;
    const total = tf.tidy(() => tf.addN(anchored.map((s) => tf.sum(tf.abs(tf.sub(s.variable, s.anchor!))))));
    const value = (await total.data())[0];
    total.dispose();
    return value;
  }

  async exportState(): Promise<RecAdamState> {
    const read = async (t: tf.Tensor) => ({ shape: [...t.shape], data: new Float32Array((await t.data()) as Float32Array) });
    const m: WeightMap = new Map();
    const v: WeightMap = new Map();
    const anchors: WeightMap = new Map();
    for (const [name, s] of this.slots) {
      m.set(name, await read(s.m));
      v.set(name, await read(s.v));
      if (s.anchor) anchors.set(name, await read(s.anchor));
    }
    return { step: this.t, m, v, anchors };
  }

  /** Restores a checkpoint taken by `exportState` (same parameter names and shapes). */
  loadState(state: RecAdamState): void {
    const put = (target: tf.Variable, name: string, w: { shape: number[]; data: Float32Array } | undefined, what: string) => {
      if (!w) throw new RangeError(`optimizer state has no ${what} for ${name}`);
      if (w.shape.join(',') !== target.shape.join(',')) throw new RangeError(`optimizer ${what} for ${name} has shape [${w.shape}], expected [${target.shape}]`);
      tf.tidy(() => target.assign(tf.tensor(w.data, target.shape, 'float32')));
    };
    for (const [name, s] of this.slots) {
      put(s.m, name, state.m.get(name), 'first moment');
      put(s.v, name, state.v.get(name), 'second moment');
      if (s.anchor) put(s.anchor, name, state.anchors.get(name), 'anchor (theta*)');
    }
    this.t = state.step;
  }

  dispose(): void {
    for (const s of this.slots.values()) {
      s.m.dispose();
      s.v.dispose();
      s.anchor?.dispose();
    }
    this.slots.clear();
  }
}

/** A non-trainable variable holding a copy of `value` (the temporary is released). */
function variableFrom(value: tf.Tensor): tf.Variable {
  const copy = value.clone();
  const v = tf.variable(copy, false);
  copy.dispose();
  return v;
}

function zeroVariable(like: tf.Tensor): tf.Variable {
  const zeros = tf.zerosLike(like);
  const v = tf.variable(zeros, false);
  zeros.dispose();
  return v;
}
