/**
 * `rmbert send` against a running `rmbert serve` on the real Kafka: documents in on stdin, their
 * EntityAnnotations out on stdout; before the stage has created its topics, a clear refusal.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { KAFKA_BROKERS } from '../../helpers/infra.ts';
import { spawnRmbert } from '../harness/serve.ts';
import { writeRandomArtifact } from '../stream/artifact.ts';
import { tempDir, testNames } from '../stream/harness.ts';

const rmbert = spawnRmbert;

test('send: documents to a running stage, their entities back as JSON lines', { timeout: 240_000 }, async () => {
  const names = testNames('send-cli');
  const tmp = await tempDir('rmbert-send');
  await writeRandomArtifact(path.join(tmp.dir, 'model'), { seed: 3 });
  const env = {
    RMBERT_KAFKA_BROKERS: KAFKA_BROKERS.join(','),
    RMBERT_INPUT_TOPIC: names.input,
    RMBERT_OUTPUT_TOPIC: names.output,
    RMBERT_DLQ_TOPIC: names.deadLetter,
    RMBERT_FEEDBACK_TOPIC: names.feedback,
    RMBERT_MODEL_UPDATES_TOPIC: names.modelUpdates,
    RMBERT_GROUP_ID: names.group,
    RMBERT_TRANSACTIONAL_ID_PREFIX: names.group,
    RMBERT_TOPIC_PARTITIONS: '1',
  };
  const lines = '{"id":"send-a","text":"患者右下腹痛3天。"}\n\n查体：腹软，右下腹压痛。\n';

  const early = rmbert(['send', '--timeout-s', '5'], env, lines);
  // No stage on these topics: the topics never appear.
  assert.equal(await early.exited, 1, early.err());
  assert.match(early.err(), /does not exist after 5 s: start `rmbert serve`/);

  const serve = rmbert(['serve'], {
    ...env,
    RMBERT_MODEL_DIR: path.join(tmp.dir, 'model'),
    RMBERT_ENGINE: 'onnx',
    RMBERT_EMBEDDED: 'true',
    RMBERT_METRICS_PORT: '0',
    RMBERT_METRICS_HOST: '127.0.0.1',
  });
  try {
    // Right away, as when the README's commands are pasted at once: send waits for the stage's topics.
    const sent = rmbert(['send', '--timeout-s', '120'], env, lines);
    assert.equal(await sent.exited, 0, sent.err());
    const records = sent.out().split('\n').filter(Boolean).map((l) => JSON.parse(l) as { documentId: string; modelVersion: string; entities: unknown[] });
    assert.equal(records.length, 2, sent.out());
    assert.equal(records[0].documentId, 'send-a');
    assert.match(records[1].documentId, /^send-[0-9a-z]+-3$/, 'a line without an id gets one (line 3)');
    for (const r of records) assert.match(r.modelVersion, /^rmbert-random\+/);
  } finally {
    serve.child.kill('SIGTERM');
    await serve.exited;
    await tmp.remove();
  }
});
