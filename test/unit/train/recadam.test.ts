import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import * as tf from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-backend-cpu';
import '@tensorflow/tfjs-core/dist/register_all_gradients.js';
import { annealLambda, plainAdam, RecAdam } from '../../../src/train/recadam.ts';

before(async () => {
  await tf.setBackend('cpu');
});

const near = (actual: number, expected: number, tol: number, what: string) =>
  assert.ok(Math.abs(actual - expected) <= tol, `${what}: ${actual} vs ${expected} (tol ${tol})`);

function toyVariables(): Map<string, tf.Variable> {
  return new Map([
    ['bert.w', tf.variable(tf.tensor1d([1.0, -2.0]), true, `bert.w.${Math.random()}`)],
    ['classifier.weight', tf.variable(tf.tensor1d([0.5]), true, `cls.${Math.random()}`)],
  ]);
}

function dispose(vars: Map<string, tf.Variable>): void {
  for (const v of vars.values()) v.dispose();
}

test('lambda(t): sigmoid, linear and constant annealing', () => {
  const sig = { kind: 'sigmoid' as const, k: 0.01, t0: 1000 };
  near(annealLambda(1000, sig), 0.5, 1e-15, 'sigmoid at t0');
  near(annealLambda(0, sig), 1 / (1 + Math.exp(10)), 1e-15, 'sigmoid at 0');
  near(annealLambda(0, sig), 4.5397868702434395e-5, 1e-15, 'sigmoid at 0 (number)');
  near(annealLambda(2000, sig), 0.9999546021312976, 1e-15, 'sigmoid at 2 t0');
  near(annealLambda(1250, { kind: 'sigmoid', k: 0.005, t0: 250 }), 0.9933071490757153, 1e-15, 'MSRA setting at 1250');
  near(annealLambda(500, { kind: 'linear', k: 0, t0: 1000 }), 0.5, 0, 'linear mid');
  near(annealLambda(3000, { kind: 'linear', k: 0, t0: 1000 }), 1, 0, 'linear capped');
  near(annealLambda(7, { kind: 'constant', k: 0, t0: 0 }), 1, 0, 'constant');
  near(annealLambda(1000, { ...sig, weight: 0.8 }), 0.4, 1e-15, 'weighted');
});

test('two updates match a hand-computed RecAdam step (pretrained annealed and pulled back, head plain Adam)', async () => {
  const vars = toyVariables();
  const opt = new RecAdam(vars, { learningRate: 1e-3, gamma: 100, epsilon: 1e-6, anneal: { kind: 'sigmoid', k: 0.1, t0: 10 } });
  assert.deepEqual(opt.pretrainedNames, ['bert.w']);
  // Expected values computed independently in double precision:
  //   lambda(1) = 0.289050497374996, lambda(2) = 0.31002551887238755
  //   theta' = theta - lr*lambda*m_hat/(sqrt(v_hat)+eps); theta = theta' - lr*(1-lambda)*gamma*(theta' - theta*)
  const steps: Array<[number[], number[], number[], number, number]> = [
    [[0.1, -0.2], [0.3], [0.9997315022183371, -1.999731500875855], 0.49900000333332223, 0.000536996905807996],
    [[0.05, 0.4], [-0.1], [0.999480972034083, -1.9998556964226284], 0.4985997865515499, 0.00066333154328857],
  ];
  for (const [g, gh, theta, head, dist] of steps) {
    const grads = { 'bert.w': tf.tensor1d(g), 'classifier.weight': tf.tensor1d(gh) };
    opt.applyGradients(grads);
    Object.values(grads).forEach((t) => t.dispose());
    const got = Array.from(await vars.get('bert.w')!.data());
    near(got[0], theta[0], 2e-7, `theta[0] step ${opt.step}`);
    near(got[1], theta[1], 2e-7, `theta[1] step ${opt.step}`);
    near((await vars.get('classifier.weight')!.data())[0], head, 2e-7, `head step ${opt.step}`);
    near(await opt.distanceL1(), dist, 5e-7, `L1 distance step ${opt.step}`);
  }
  opt.dispose();
  dispose(vars);
});

/** Minimises sum((A x - b)^2) + head term with grads from tf.grads; returns the trajectory of values. */
async function runToy(step: (vars: Map<string, tf.Variable>, grads: Map<string, tf.Tensor>) => void, vars: Map<string, tf.Variable>, n: number) {
  const target = tf.tensor1d([0.3, 0.7]);
  for (let i = 0; i < n; i++) {
    const { value, grads } = tf.variableGrads(() =>
      tf.tidy(() => {
        const w = vars.get('bert.w')!;
        const h = vars.get('classifier.weight')!;
        return tf.add(tf.sum(tf.square(tf.sub(tf.mul(w, h), target))), tf.sum(tf.square(h))) as tf.Scalar;
      }),
    );
    const byName = new Map<string, tf.Tensor>();
    for (const [name, v] of vars) byName.set(name, grads[v.name]);
    step(vars, byName);
    Object.values(grads).forEach((t) => t.dispose());
    value.dispose();
  }
  target.dispose();
  return { w: Array.from(await vars.get('bert.w')!.data()), h: Array.from(await vars.get('classifier.weight')!.data()) };
}

test('gamma = 0 with lambda = 1 (constant) is exactly Adam: matches tf.train.adam over 50 steps', async () => {
  const a = toyVariables();
  const b = toyVariables();
  const rec = new RecAdam(a, plainAdam(0.01, { epsilon: 1e-7 }));
  const adam = tf.train.adam(0.01, 0.9, 0.999, 1e-7);
  const ra = await runToy((_v, g) => rec.applyGradients(g), a, 50);
  const rb = await runToy((vars, g) => {
    const named: Record<string, tf.Variable> = {};
    for (const [name, v] of vars) named[v.name] = g.get(name)! as tf.Variable;
    adam.applyGradients(named);
  }, b, 50);
  // Same algorithm; the last digits differ because tf.train.adam accumulates beta^t in float32.
  for (let i = 0; i < 2; i++) near(ra.w[i], rb.w[i], 5e-6, `w[${i}]`);
  near(ra.h[0], rb.h[0], 5e-6, 'head');
  // It moved: this is not a comparison of two untouched models.
  assert.ok(Math.abs(ra.w[0] - 1) > 0.03, `moved ${ra.w[0]}`);
  assert.equal(await rec.distanceL1(), 0, 'no anchors kept without a penalty');
  rec.dispose();
  adam.dispose();
  dispose(a);
  dispose(b);
});

test('gamma = 0 under sigmoid annealing is Adam with lr scaled by lambda(t) on pretrained parameters only', async () => {
  const vars = toyVariables();
  const anneal = { kind: 'sigmoid' as const, k: 0.5, t0: 4 };
  const opt = new RecAdam(vars, { learningRate: 0.01, gamma: 0, epsilon: 1e-7, anneal });
  // Reference: per-step Adam by hand with lr*lambda(t) for bert.w and lr for the head.
  const ref = { w: [1.0, -2.0], h: [0.5] };
  const mom = { mw: [0, 0], vw: [0, 0], mh: [0], vh: [0] };
  const target = [0.3, 0.7];
  for (let t = 1; t <= 10; t++) {
    const h = ref.h[0];
    const gw = ref.w.map((w, i) => 2 * (w * h - target[i]) * h);
    const gh = ref.w.reduce((acc, w, i) => acc + 2 * (w * h - target[i]) * w, 0) + 2 * h;
    const lam = annealLambda(t, anneal);
    const adamStep = (g: number, mArr: number[], vArr: number[], i: number) => {
      mArr[i] = 0.9 * mArr[i] + 0.1 * g;
      vArr[i] = 0.999 * vArr[i] + 0.001 * g * g;
      return mArr[i] / (1 - 0.9 ** t) / (Math.sqrt(vArr[i] / (1 - 0.999 ** t)) + 1e-7);
    };
    const dw = gw.map((g, i) => adamStep(g, mom.mw, mom.vw, i));
    const dh = adamStep(gh, mom.mh, mom.vh, 0);
    ref.w = ref.w.map((w, i) => w - 0.01 * lam * dw[i]);
    ref.h = [h - 0.01 * dh];
  }
  const got = await runToy((_v, g) => opt.applyGradients(g), vars, 10);
  for (let i = 0; i < 2; i++) near(got.w[i], ref.w[i], 2e-6, `w[${i}]`);
  near(got.h[0], ref.h[0], 2e-6, 'head');
  opt.dispose();
  dispose(vars);
});

test('the head is not annealed: at lambda ~ 0 pretrained parameters barely move, the head takes a full Adam step', async () => {
  const vars = toyVariables();
  const opt = new RecAdam(vars, { learningRate: 0.01, gamma: 10, anneal: { kind: 'sigmoid', k: 1, t0: 100 } });
  opt.applyGradients({ 'bert.w': tf.tensor1d([1, 1]), 'classifier.weight': tf.tensor1d([1]) });
  const w = Array.from(await vars.get('bert.w')!.data());
  const h = (await vars.get('classifier.weight')!.data())[0];
  near(h, 0.5 - 0.01 * (1 / (1 + 1e-6)), 1e-7, 'head moved by lr');
  near(w[0], 1 - 0.01 * annealLambda(1, opt.options.anneal) / (1 + 1e-6), 1e-7, 'pretrained moved by lr*lambda');
  assert.ok(1 - w[0] < 1e-6);
  opt.dispose();
  dispose(vars);
});

test('the penalty pulls pretrained parameters back towards theta* and leaves the head alone', async () => {
  const vars = toyVariables();
  tf.tidy(() => vars.get('bert.w')!.assign(tf.tensor1d([1.5, -2.5])));
  const pull = new RecAdam(vars, { learningRate: 0.01, gamma: 50, anneal: { kind: 'linear', k: 0, t0: 1e9 } });
  // theta* is the value at construction: [1.5, -2.5]. Zero gradients: Adam direction 0, lambda ~ 0.
  tf.tidy(() => vars.get('bert.w')!.assign(tf.tensor1d([2.5, -2.5])));
  pull.applyGradients({ 'bert.w': tf.zeros([2]), 'classifier.weight': tf.zeros([1]) });
  const w = Array.from(await vars.get('bert.w')!.data());
  // theta - lr*(1-lambda)*gamma*(theta - theta*) = 2.5 - 0.5*(1 - 1e-9)*1.0
  near(w[0], 2.0, 1e-6, 'pulled half-way (lr*gamma = 0.5)');
  near(w[1], -2.5, 0, 'already at theta*');
  near((await vars.get('classifier.weight')!.data())[0], 0.5, 0, 'head untouched by the penalty');
  near(await pull.distanceL1(), 0.5, 1e-6, 'L1 distance');
  pull.dispose();
  dispose(vars);
});

test('decoupled weight decay skips biases and LayerNorm', async () => {
  const vars = new Map([
    ['bert.dense.weight', tf.variable(tf.tensor1d([2]), true, `dw.${Math.random()}`)],
    ['bert.dense.bias', tf.variable(tf.tensor1d([2]), true, `db.${Math.random()}`)],
    ['bert.LayerNorm.weight', tf.variable(tf.tensor1d([2]), true, `ln.${Math.random()}`)],
  ]);
  const opt = new RecAdam(vars, plainAdam(0.1, { weightDecay: 0.5 }));
  const zero = () => tf.zeros([1]);
  opt.applyGradients({ 'bert.dense.weight': zero(), 'bert.dense.bias': zero(), 'bert.LayerNorm.weight': zero() });
  near((await vars.get('bert.dense.weight')!.data())[0], 2 - 0.1 * 0.5 * 2, 1e-7, 'decayed');
  near((await vars.get('bert.dense.bias')!.data())[0], 2, 0, 'bias not decayed');
  near((await vars.get('bert.LayerNorm.weight')!.data())[0], 2, 0, 'LayerNorm not decayed');
  opt.dispose();
  dispose(vars);
});

test('no tensor leak across 100 steps; optimizer state round-trips through export/load', async () => {
  const vars = toyVariables();
  const opt = new RecAdam(vars, { learningRate: (t) => 0.01 / Math.sqrt(t), gamma: 2, anneal: { kind: 'sigmoid', k: 0.1, t0: 20 } });
  await runToy((_v, g) => opt.applyGradients(g), vars, 1);
  await opt.distanceL1();
  const before = tf.memory().numTensors;
  await runToy((_v, g) => opt.applyGradients(g), vars, 100);
  await opt.distanceL1();
  assert.equal(tf.memory().numTensors, before, 'tensors after 100 more steps');
  assert.equal(opt.step, 101);

  // Resume: a second optimizer over a copy of the variables, loaded from the state, continues identically.
  const state = await opt.exportState();
  const copy = new Map([...vars].map(([n, v]) => [n, tf.variable(v.clone(), true, `${n}.copy.${Math.random()}`)]));
  const resumed = new RecAdam(copy, { learningRate: (t) => 0.01 / Math.sqrt(t), gamma: 2, anneal: { kind: 'sigmoid', k: 0.1, t0: 20 } });
  resumed.loadState(state);
  assert.equal(resumed.step, 101);
  const a = await runToy((_v, g) => opt.applyGradients(g), vars, 5);
  const b = await runToy((_v, g) => resumed.applyGradients(g), copy, 5);
  assert.deepEqual(a, b);
  const distance = await opt.distanceL1();
  assert.ok(distance > 0.01 && Number.isFinite(distance), `distance ${distance}`);
  near(await resumed.distanceL1(), distance, 0, 'same distance to theta*');
  assert.throws(() => opt.applyGradients({ nope: tf.zeros([1]) }), /unknown parameter nope/);
  opt.dispose();
  resumed.dispose();
  dispose(vars);
  dispose(copy);
});
