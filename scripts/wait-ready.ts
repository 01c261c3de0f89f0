/**
 * Waits until the local servers started by scripts/infra.sh answer their real clients: kafkajs
 * (cluster metadata with a controller, then one transactional producer and one group coordinator
 * so that the internal topics exist before the first test needs them) and neo4j-driver (an
 * authenticated query). Fails fast when a server process exits, and on timeout, naming the log.
 *
 *   node --import tsx scripts/wait-ready.ts --timeout 180 \
 *     --kafka 127.0.0.1:19092 [--kafka-pid N] [--kafka-log FILE] [--kafka-launched-at EPOCH_MS] \
 *     --neo4j bolt://127.0.0.1:17687 [--neo4j-pid N] [--neo4j-log FILE] [--neo4j-ready-file FILE] \
 *       [--neo4j-launched-at EPOCH_MS]
 *
 * Neo4j credentials come from RMBERT_INFRA_NEO4J_USER / RMBERT_INFRA_NEO4J_PASSWORD.
 */
import { existsSync, readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { parseArgs } from 'node:util';
import { Kafka, logLevel } from 'kafkajs';
import neo4j from 'neo4j-driver';

interface Target {
  name: string;
  address: string;
  pid?: number;
  logFile?: string;
  launchedAt?: number;
  /** Resolves when the server is ready; throws while it is not. */
  probe(): Promise<void>;
  /** An error that waiting longer cannot fix (for example, wrong credentials). */
  isFatal?(error: unknown): boolean;
}

class NotReady extends Error {}

const { values } = parseArgs({
  options: {
    timeout: { type: 'string', default: '180' },
    kafka: { type: 'string' },
    'kafka-pid': { type: 'string' },
    'kafka-log': { type: 'string' },
    'kafka-launched-at': { type: 'string' },
    neo4j: { type: 'string' },
    'neo4j-pid': { type: 'string' },
    'neo4j-log': { type: 'string' },
    'neo4j-ready-file': { type: 'string' },
    'neo4j-launched-at': { type: 'string' },
  },
  strict: true,
});

const timeoutMs = Number(values.timeout) * 1000;
if (!Number.isFinite(timeoutMs) || timeoutMs <= 0) {
  console.error(`wait-ready: --timeout must be a number of seconds, got ${values.timeout}`);
  process.exit(2);
}

const optionalNumber = (text: string | undefined): number | undefined => {
  const n = text === undefined ? NaN : Number(text);
  return Number.isFinite(n) && n > 0 ? n : undefined;
};

function kafkaTarget(brokers: string): Target {
  let warmedUp = false;
  return {
    name: 'kafka',
    address: brokers,
    pid: optionalNumber(values['kafka-pid']),
    logFile: values['kafka-log'],
    launchedAt: optionalNumber(values['kafka-launched-at']),
    async probe() {
      const client = (retries: number): Kafka =>
        new Kafka({
          clientId: 'rmbert-infra-ready',
          brokers: brokers.split(','),
          logLevel: logLevel.NOTHING,
          connectionTimeout: 2000,
          requestTimeout: 10000,
          retry: { retries },
        });
      // Probing: one attempt, this loop is the retry. Warming up: the client's own retries ride
      // out the coordinator loading its partitions (and idempotent producers require retries).
      const admin = client(0).admin();
      try {
        await admin.connect();
        const cluster = await admin.describeCluster();
        if (cluster.brokers.length === 0 || cluster.controller === null || cluster.controller < 0) {
          throw new NotReady('no broker registered with the controller yet');
        }
        if (!warmedUp) {
          // Creates __consumer_offsets (group coordinator lookup) and __transaction_state
          // (producer id for a transactional id) now, not inside the first test's timeout.
          const warmUp = client(5);
          const warmUpAdmin = warmUp.admin();
          await warmUpAdmin.connect();
          try {
            await warmUpAdmin.describeGroups(['rmbert-infra-ready']);
          } finally {
            await warmUpAdmin.disconnect();
          }
          const producer = warmUp.producer({
            transactionalId: 'rmbert-infra-ready',
            idempotent: true,
            maxInFlightRequests: 1,
          });
          await producer.connect();
          try {
            const transaction = await producer.transaction();
            await transaction.abort();
          } finally {
            await producer.disconnect();
          }
          warmedUp = true;
        }
      } finally {
        await admin.disconnect().catch(() => undefined);
      }
    },
  };
}

function neo4jTarget(uri: string): Target {
  const user = process.env.RMBERT_INFRA_NEO4J_USER ?? 'neo4j';
  const password = process.env.RMBERT_INFRA_NEO4J_PASSWORD ?? 'rmbert-local';
  const readyFile = values['neo4j-ready-file'];
  return {
    name: 'neo4j',
    address: `${uri} (user ${user})`,
    pid: optionalNumber(values['neo4j-pid']),
    logFile: values['neo4j-log'],
    launchedAt: optionalNumber(values['neo4j-launched-at']),
    async probe() {
      // The launcher sets the password after Bolt opens; connecting earlier would only be refused.
      if (readyFile !== undefined && !existsSync(readyFile)) {
        throw new NotReady('the launcher has not reported ready yet');
      }
      const driver = neo4j.driver(uri, neo4j.auth.basic(user, password), {
        connectionTimeout: 3000,
        maxTransactionRetryTime: 1000,
        logging: { level: 'error', logger: () => undefined },
      });
      try {
        const result = await driver.executeQuery('RETURN 1 AS one');
        if (result.records[0]?.get('one')?.toNumber?.() !== 1) {
          throw new NotReady('unexpected answer to RETURN 1');
        }
      } finally {
        await driver.close();
      }
    },
    isFatal(error) {
      const code = (error as { code?: string }).code ?? '';
      return code.startsWith('Neo.ClientError.Security.');
    },
  };
}

function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function logTail(file: string | undefined, lines = 15): string {
  if (file === undefined || !existsSync(file)) return '';
  const text = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  return text.map((line) => `    ${line.slice(0, 300)}`).join('\n');
}

function describe(error: unknown): string {
  if (error instanceof Error) {
    const code = (error as { code?: string }).code;
    return code !== undefined ? `${code}: ${error.message}` : error.message;
  }
  return String(error);
}

const seconds = (ms: number): string => (ms / 1000).toFixed(1);

async function waitFor(target: Target, deadline: number): Promise<void> {
  const waitStarted = Date.now();
  let lastError: unknown = new NotReady('not probed yet');
  for (;;) {
    if (target.pid !== undefined && !processAlive(target.pid)) {
      const tail = logTail(target.logFile);
      throw new Error(
        `${target.name} exited while starting (pid ${target.pid}); see ${target.logFile ?? 'its log'}` +
          (tail ? `; last lines:\n${tail}` : ''),
      );
    }
    try {
      await target.probe();
      const timing =
        target.launchedAt !== undefined
          ? `started in ${seconds(Date.now() - target.launchedAt)} s`
          : `already running, answered in ${seconds(Date.now() - waitStarted)} s`;
      console.log(`infra: ${target.name}: ready at ${target.address} (${timing})`);
      return;
    } catch (error) {
      lastError = error;
      if (target.isFatal?.(error)) {
        throw new Error(
          `${target.name} refused the credentials: ${describe(error)}. The data in .infra/ was made with ` +
            'another password: run scripts/infra.sh clean, then up.',
        );
      }
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `${target.name} not ready at ${target.address} after ${seconds(Date.now() - waitStarted)} s ` +
          `(last error: ${describe(lastError)}); see ${target.logFile ?? 'its log'}` +
          (target.logFile ? `\n${logTail(target.logFile)}` : ''),
      );
    }
    await sleep(500);
  }
}

const targets: Target[] = [];
if (values.kafka !== undefined) targets.push(kafkaTarget(values.kafka));
if (values.neo4j !== undefined) targets.push(neo4jTarget(values.neo4j));
if (targets.length === 0) {
  console.error('wait-ready: nothing to wait for (give --kafka and/or --neo4j)');
  process.exit(2);
}

const deadline = Date.now() + timeoutMs;
const outcomes = await Promise.allSettled(targets.map((target) => waitFor(target, deadline)));
let failed = false;
for (const outcome of outcomes) {
  if (outcome.status === 'rejected') {
    failed = true;
    console.error(`infra: error: ${describe(outcome.reason)}`);
  }
}
process.exit(failed ? 1 : 0);
