/**
 * Issue 15, item 3, regression: after a broker outage and reconnect, SIGTERM ended the stage ("stopped"
 * logged) but the process never exited, because a kafkajs socket and its request-queue timers kept the
 * event loop alive. The broker here is a private Kafka started by scripts/infra.sh on its own ports and
 * state directory (the shared one other tests use is not touched), stopped and started again while
 * `rmbert serve` runs; then SIGTERM must end the process within the shutdown deadline, with exit 0.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdtemp, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';
import { Kafka, logLevel, Partitioners } from 'kafkajs';
import type { Document } from '../../../src/domain/index.ts';
import { codecs } from '../../../src/stream/codecs.ts';
import { toEmrDocumentRecord } from '../../../src/stream/records.ts';
import { REPO_ROOT } from '../../helpers/paths.ts';
import { freePort, metric, serveEnv, spawnServe, waitFor, waitReady } from '../harness/serve.ts';
import { writeRandomArtifact } from './artifact.ts';
import { createTopics, sampleDocuments, tempDir, testNames } from './harness.ts';

const INFRA = path.join(REPO_ROOT, 'scripts/infra.sh');
const DEADLINE_MS = 15_000;
const run = promisify(execFile);

let infraDir = '';
let infraEnv: Record<string, string> = {};
let brokers: string[] = [];

async function infra(action: 'up' | 'down'): Promise<void> {
  await run('bash', [INFRA, action, 'kafka'], { env: { ...process.env, ...infraEnv }, timeout: 240_000 });
}

before(async () => {
  infraDir = await mkdtemp(path.join(os.tmpdir(), 'rmbert-outage-infra-'));
  // The shared state's resolved classpaths, so that no Maven run is needed.
  const shared = path.join(process.env.RMBERT_INFRA_DIR ?? path.join(REPO_ROOT, '.infra'), 'classpath');
  if (existsSync(shared)) await cp(shared, path.join(infraDir, 'classpath'), { recursive: true });
  const [port, controllerPort] = [await freePort(), await freePort()];
  infraEnv = { RMBERT_INFRA_DIR: infraDir, RMBERT_KAFKA_PORT: String(port), RMBERT_KAFKA_CONTROLLER_PORT: String(controllerPort), RMBERT_INFRA_CDS: '0' };
  brokers = [`127.0.0.1:${port}`];
  await infra('up');
});

after(async () => {
  await infra('down').catch(() => undefined);
  await rm(infraDir, { recursive: true, force: true });
});

async function produce(topic: string, docs: Document[]): Promise<void> {
  const kafka = new Kafka({ clientId: 'rmbert-test-outage', brokers, logLevel: logLevel.NOTHING, retry: { retries: 10 } });
  const producer = kafka.producer({ createPartitioner: Partitioners.DefaultPartitioner, allowAutoTopicCreation: false });
  await producer.connect();
  try {
    await producer.send({ topic, acks: -1, messages: docs.map((d) => ({ key: d.id, value: codecs().emrDocument.encode(toEmrDocumentRecord(d)) })) });
  } finally {
    await producer.disconnect();
  }
}

test('after a broker outage and reconnect, SIGTERM ends rmbert serve within the deadline with exit 0', { timeout: 420_000 }, async () => {
  const names = testNames('stage-outage');
  const tmp = await tempDir('rmbert-outage');
  const modelDir = path.join(tmp.dir, 'models');
  await writeRandomArtifact(path.join(modelDir, 'v1'), { seed: 3 });
  const kafka = new Kafka({ clientId: 'rmbert-test-outage', brokers, logLevel: logLevel.NOTHING });
  await createTopics(kafka, names, 1);
  const port = await freePort();
  const serve = spawnServe(
    serveEnv(names, {
      brokers,
      modelDir,
      port,
      extra: { RMBERT_SHUTDOWN_DEADLINE_MS: String(DEADLINE_MS) },
    }),
  );
  const { child, exited } = serve;
  const base = `http://127.0.0.1:${port}`;
  try {
    await waitReady(serve);
    const samples = await sampleDocuments();
    const docs = (prefix: string): Document[] => samples.slice(0, 10).map((d, i) => ({ ...d, id: `${prefix}-${i}` }));
    await produce(names.input, docs('before'));
    await waitFor('10 records out', async () => (await metric(base, 'rmbert_records_out_total')) >= 10, 60_000, 250);

    // The outage: the broker stops (cleanly, as in a restart) for a while, then comes back.
    await infra('down');
    await new Promise((r) => setTimeout(r, 8000));
    await infra('up');
    await produce(names.input, docs('after'));
    await waitFor('the stage back at work after the outage', async () => (await metric(base, 'rmbert_records_out_total')) >= 20, 180_000, 250);

    const signalledAt = Date.now();
    child.kill('SIGTERM');
    const code = await Promise.race([exited, new Promise<'hung'>((r) => setTimeout(() => r('hung'), DEADLINE_MS + 10_000))]);
    const took = Date.now() - signalledAt;
    assert.notEqual(code, 'hung', `still running ${took} ms after SIGTERM; log tail:\n${serve.out().slice(-2000)}`);
    assert.equal(code, 0, `exit ${code}; stderr:\n${serve.err()}`);
    assert.ok(took < DEADLINE_MS + 1000, `exited ${took} ms after SIGTERM (deadline ${DEADLINE_MS} ms)`);
    const endedExplicitly = serve.out().includes('did not end by itself');
    console.log(`exited ${took} ms after SIGTERM, after a broker outage and reconnect${endedExplicitly ? ' (ended explicitly: something kept the event loop alive)' : ''}`);
  } finally {
    serve.kill();
    await tmp.remove();
  }
});
