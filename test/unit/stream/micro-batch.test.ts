import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { KafkaMessage } from 'kafkajs';
import { cutMicroBatches } from '../../../src/stream/stage.ts';

const msg = (offset: number, bytes: number): KafkaMessage =>
  ({ offset: String(offset), key: null, value: Buffer.alloc(bytes), timestamp: '0', attributes: 0, headers: {} }) as unknown as KafkaMessage;

test('a fetched batch is cut on record count', () => {
  const chunks = cutMicroBatches([0, 1, 2, 3, 4].map((o) => msg(o, 10)), 2, 1_000_000);
  assert.deepEqual(chunks.map((c) => c.messages.map((m) => m.offset)), [['0', '1'], ['2', '3'], ['4']]);
  assert.deepEqual(chunks.map((c) => c.bytes), [20, 20, 10]);
});

test('a fetched batch is cut on bytes, whichever limit comes first', () => {
  const chunks = cutMicroBatches([msg(0, 400), msg(1, 400), msg(2, 400), msg(3, 10)], 100, 1000);
  assert.deepEqual(chunks.map((c) => c.messages.length), [2, 2]);
});

test('a record larger than the byte limit still forms a micro-batch of its own', () => {
  const chunks = cutMicroBatches([msg(0, 10), msg(1, 5000), msg(2, 10)], 100, 1000);
  assert.deepEqual(chunks.map((c) => c.messages.map((m) => m.offset)), [['0'], ['1'], ['2']]);
  assert.deepEqual(cutMicroBatches([], 10, 10), []);
});

test('a fetched batch is cut on cost (characters of text): a long document is alone in its micro-batch', () => {
  const chars = [100, 100, 5000, 100, 100, 100];
  const messages = chars.map((_, i) => msg(i, 10));
  const cost = (m: KafkaMessage) => chars[Number(m.offset)];
  const chunks = cutMicroBatches(messages, 100, 1_000_000, 250, cost);
  assert.deepEqual(chunks.map((c) => c.messages.map((m) => m.offset)), [['0', '1'], ['2'], ['3', '4'], ['5']]);
  assert.equal(cutMicroBatches(messages, 100, 1_000_000).length, 1, 'no cost limit: one micro-batch');
});
