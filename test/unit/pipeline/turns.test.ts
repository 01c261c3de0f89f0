import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { InjectedSentence } from '../../../src/domain/index.ts';
import type { ModelRuntime } from '../../../src/pipeline/ports.ts';
import { EngineTurns, onTurns } from '../../../src/pipeline/turns.ts';

/** A model whose classify calls are recorded and finish only when the test lets them. */
function gatedModel() {
  const calls: { n: number; release: () => void }[] = [];
  let waiting: (() => void) | null = null;
  const model = {
    version: { name: 'm', hash: 'h' },
    engine: 'test',
    usesKnowledge: false,
    tokenize: () => [],
    inject: () => ({ windows: [] }),
    classify: (sentences: readonly InjectedSentence[]) =>
      new Promise<Float32Array[]>((resolve) => {
        calls.push({ n: sentences.length, release: () => resolve(sentences.map(() => new Float32Array(1))) });
        waiting?.();
      }),
    decode: () => [],
    dispose: () => undefined,
  } as unknown as ModelRuntime;
  const nextCall = (count: number) => new Promise<void>((resolve) => {
    const check = () => {
      if (calls.length >= count) {
        waiting = null;
        resolve();
      } else waiting = check;
    };
    check();
  });
  return { model, calls, nextCall };
}

const sentences = (n: number) => Array.from({ length: n }, () => ({}) as InjectedSentence);

test('a heavy document is classified in slices, and a normal call waiting goes before its next slice', async () => {
  const { model, calls, nextCall } = gatedModel();
  const turns = new EngineTurns();
  const heavy = onTurns(model, turns, 'heavy', 4);
  const normal = onTurns(model, turns, 'normal');
  const heavyDone = heavy.classify(sentences(10));
  await nextCall(1);
  assert.equal(calls[0].n, 4, 'the first slice of the heavy document');
  const normalDone = normal.classify(sentences(3));
  // The normal call waits for the slice in progress, not for the whole document.
  await Promise.resolve();
  assert.equal(calls.length, 1);
  assert.deepEqual(turns.pending(), { normal: 1, heavy: 0 });
  calls[0].release();
  await nextCall(2);
  assert.equal(calls[1].n, 3, 'the normal call goes next');
  calls[1].release();
  assert.equal((await normalDone).length, 3);
  await nextCall(3);
  assert.equal(calls[2].n, 4, 'then the heavy document goes on');
  calls[2].release();
  await nextCall(4);
  assert.equal(calls[3].n, 2);
  calls[3].release();
  assert.equal((await heavyDone).length, 10, 'one result per window, in order');
  assert.deepEqual(turns.pending(), { normal: 0, heavy: 0 });
});

test('normal calls take turns one at a time, in the order they came', async () => {
  const { model, calls, nextCall } = gatedModel();
  const turns = new EngineTurns();
  const normal = onTurns(model, turns, 'normal');
  const a = normal.classify(sentences(1));
  const b = normal.classify(sentences(2));
  await nextCall(1);
  await Promise.resolve();
  assert.equal(calls.length, 1, 'the second call waits for the first');
  calls[0].release();
  await nextCall(2);
  assert.equal(calls[1].n, 2);
  calls[1].release();
  assert.deepEqual([(await a).length, (await b).length], [1, 2]);
});

test('a normal call goes before a heavy slice that has waited longer', async () => {
  const { model, calls, nextCall } = gatedModel();
  const turns = new EngineTurns();
  const normal = onTurns(model, turns, 'normal');
  const heavy = onTurns(model, turns, 'heavy', 8);
  const a = normal.classify(sentences(1));
  await nextCall(1);
  const h = heavy.classify(sentences(5));
  await Promise.resolve();
  const b = normal.classify(sentences(2));
  await Promise.resolve();
  assert.deepEqual(turns.pending(), { normal: 1, heavy: 1 });
  calls[0].release();
  await nextCall(2);
  assert.equal(calls[1].n, 2, 'the normal call that came later goes first');
  calls[1].release();
  await nextCall(3);
  assert.equal(calls[2].n, 5);
  calls[2].release();
  assert.deepEqual([(await a).length, (await b).length, (await h).length], [1, 2, 5]);
});

test('heavy slices wait while the normal lane has work in progress, and go on when it ends (or after the longest wait)', async () => {
  const { model, calls, nextCall } = gatedModel();
  const turns = new EngineTurns(60_000);
  const heavy = onTurns(model, turns, 'heavy', 4);
  const done = turns.normalBusy();
  const h = heavy.classify(sentences(3));
  await new Promise((r) => setImmediate(r));
  assert.equal(calls.length, 0, 'no heavy slice while the normal lane works');
  done();
  done();
  await nextCall(1);
  calls[0].release();
  assert.equal((await h).length, 3);
  // The wait is bounded: this resolves although the normal lane stays busy.
  const bounded = new EngineTurns(10);
  const stillBusy = bounded.normalBusy();
  await bounded.normalIdle();
  stillBusy();
});
