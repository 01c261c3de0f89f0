/**
 * Issue 15 items 5 and 8: two `rmbert serve` processes in one consumer group on a 4-partition input,
 * one SIGKILLed while records stream in (its transactions cut wherever they are). The other takes over
 * its partitions once the dead member's session expires; a read_committed consumer of the output and
 * dead-letter topics must then see every input id exactly once. The takeover time is measured by
 * benchmarks/reliability.ts, not asserted here.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { Partitioners } from 'kafkajs';
import { codecs } from '../../../src/stream/codecs.ts';
import { toEmrDocumentRecord } from '../../../src/stream/records.ts';
import { KAFKA_BROKERS } from '../../helpers/infra.ts';
import { freePort, serveEnv, spawnServe, waitFor, waitReady, type ServeProcess } from '../harness/serve.ts';
import { writeRandomArtifact } from './artifact.ts';
import { Collector, createTopics, decodeAnnotations, decodeDeadLetter, sampleDocuments, tempDir, testKafka, testNames } from './harness.ts';

const PARTITIONS = 4;
const RECORDS = 800;

function assignedPartitions(serve: ServeProcess): number[] {
  const joins = serve.logLines('joined consumer group').filter((l) => l.lane === 'normal');
  return ((joins.at(-1)?.partitions as number[] | undefined) ?? []).slice().sort();
}

test('two stages in one group, one SIGKILLed mid-stream: every id exactly once across the rebalance', { timeout: 400_000 }, async () => {
  const names = testNames('stage-rebalance');
  const tmp = await tempDir('rmbert-rebalance');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 5 });
  const kafka = testKafka();
  await createTopics(kafka, names, PARTITIONS);
  const outputs = await Collector.start(kafka, names.output, decodeAnnotations);
  const dead = await Collector.start(kafka, names.deadLetter, decodeDeadLetter);
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  const env = async (instance: string) =>
    serveEnv(names, {
      brokers: KAFKA_BROKERS,
      modelDir,
      port: await freePort(),
      extra: {
        RMBERT_INSTANCE_ID: instance,
        RMBERT_KAFKA_SESSION_TIMEOUT_MS: '6000',
        RMBERT_KAFKA_HEARTBEAT_INTERVAL_MS: '500',
        RMBERT_BATCH_MAX_RECORDS: '4',
        RMBERT_SHUTDOWN_DEADLINE_MS: '20000',
      },
    });
  const a = spawnServe(await env('stage-a'));
  const b = spawnServe(await env('stage-b'));
  try {
    await Promise.all([waitReady(a), waitReady(b)]);
    await waitFor('both members assigned partitions', () => assignedPartitions(a).length > 0 && assignedPartitions(b).length > 0 && assignedPartitions(a).length + assignedPartitions(b).length === PARTITIONS, 60_000);
    const ownedByA = assignedPartitions(a);

    const samples = await sampleDocuments();
    const ids: string[] = [];
    const partitionOf = new Map<string, number>();
    let killedAt = 0;
    let outputsAtKill = 0;
    // Records stream in at a steady pace; A is killed once some have come out, while it is at work.
    for (let i = 0; i < RECORDS; i += 10) {
      const messages = Array.from({ length: 10 }, (_, j) => {
        const n = i + j;
        const doc = { ...samples[n % samples.length], id: `rebalance-${n}` };
        ids.push(doc.id);
        partitionOf.set(doc.id, n % PARTITIONS);
        return { key: doc.id, value: codecs().emrDocument.encode(toEmrDocumentRecord(doc)), partition: n % PARTITIONS };
      });
      await producer.send({ topic: names.input, acks: -1, messages });
      if (killedAt === 0 && outputs.items.length >= 120) {
        a.child.kill('SIGKILL');
        killedAt = Date.now();
        outputsAtKill = outputs.items.length;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (killedAt === 0) {
      a.child.kill('SIGKILL');
      killedAt = Date.now();
      outputsAtKill = outputs.items.length;
    }
    assert.equal(await a.exited, null, 'stage A was ended by SIGKILL');

    const seen = () => new Set([...outputs.items.map((o) => o.record.documentId), ...dead.items.map((d) => d.key ?? '')]).size;
    await waitFor(`all ${RECORDS} ids out (outputs ${outputs.items.length}, dead letters ${dead.items.length})`, () => seen() >= RECORDS, 180_000);
    assert.deepEqual(assignedPartitions(b), [...Array(PARTITIONS).keys()], 'B owns every partition after the takeover');

    b.child.kill('SIGTERM');
    assert.equal(await b.exited, 0, `B's exit code after SIGTERM; stderr:\n${b.err().slice(-2000)}`);
    // Everything is committed now; let the read_committed readers reach the end.
    let last = -1;
    await waitFor('the readers to settle', () => {
      const n = outputs.items.length + dead.items.length;
      const settled = n === last;
      last = n;
      return settled;
    }, 60_000, 3000);

    const counts = new Map<string, number>();
    for (const o of outputs.items) counts.set(o.record.documentId, (counts.get(o.record.documentId) ?? 0) + 1);
    for (const d of dead.items) counts.set(d.key ?? '', (counts.get(d.key ?? '') ?? 0) + 1);
    const lost = ids.filter((id) => !counts.has(id));
    const duplicated = [...counts].filter(([, n]) => n > 1).map(([id]) => id);
    const unknown = [...counts.keys()].filter((id) => !partitionOf.has(id));
    assert.deepEqual({ lost, duplicated, unknown }, { lost: [], duplicated: [], unknown: [] });
    assert.equal(dead.items.length, 0, 'every record is a valid document');

    const skipped = b.logLines('skipped records the previous owner of the partition had committed').length;
    console.log(`A owned partitions ${ownedByA.join(',')} and was killed when ${outputsAtKill} outputs were out; B joined ${b.logLines('joined consumer group').filter((l) => l.lane === 'normal').length} generations and skipped records the dead member had committed on ${skipped} partitions; ${RECORDS} ids: 0 lost, 0 duplicated`);
  } finally {
    a.kill();
    b.kill();
    await producer.disconnect().catch(() => undefined);
    await outputs.close().catch(() => undefined);
    await dead.close().catch(() => undefined);
    await tmp.remove();
  }
});
