import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as tf from '@tensorflow/tfjs-core';
import { ModelError } from '../../../src/errors/index.ts';
import { currentBackend, selectBackend } from '../../../src/model/backend.ts';

describe('selectBackend', () => {
  it('auto: tries tfjs-node-gpu and tfjs-node first, says why each was skipped, lands on wasm here', async () => {
    assert.equal(currentBackend(), null);
    const lines: string[] = [];
    const selection = await selectBackend('auto', (l) => lines.push(l));
    // Neither native package is installed on this machine (tfjs-node-gpu cannot install offline).
    assert.deepEqual(selection.skipped.map((s) => s.candidate), ['tfjs-node-gpu', 'tfjs-node']);
    assert.ok(selection.skipped.every((s) => s.reason.length > 0));
    assert.equal(lines.length, 2);
    assert.match(lines[0], /tfjs-node-gpu skipped: /);
    assert.equal(selection.backend, 'wasm');
    assert.equal(selection.engineName, 'tfjs-wasm');
    assert.equal(tf.getBackend(), 'wasm');
    assert.equal(currentBackend(), selection);
  });

  it('the wasm backend computes: a matmul equals the hand result', () => {
    const c = tf.matMul(tf.tensor2d([[1, 2], [3, 4]]), tf.tensor2d([[5, 6], [7, 8]]));
    assert.deepEqual([...c.dataSync()], [19, 22, 43, 50]);
  });

  it('is chosen once: asking for the same again is fine, another backend is an error', async () => {
    assert.equal((await selectBackend('wasm')).engineName, 'tfjs-wasm');
    assert.equal((await selectBackend('auto')).engineName, 'tfjs-wasm');
    await assert.rejects(selectBackend('cpu'), (e: unknown) => e instanceof ModelError && /cannot switch to cpu/.test(e.message));
  });

  it('rejects an unknown backend name', async () => {
    // A fresh module instance would be needed to test selection failure; the name check needs none.
    await assert.rejects(selectBackend('tpu' as never), ModelError);
  });
});
