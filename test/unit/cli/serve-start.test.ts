/**
 * `rmbert serve` when the broker it is pointed at does not answer: it stops within seconds and says
 * so on stderr for the person at the terminal, and in its JSON log for machines.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import { REPO_ROOT } from '../../helpers/paths.ts';

/** A loopback port nothing listens on (taken, then released). */
async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address() as net.AddressInfo;
      s.close(() => resolve(port));
    });
  });
}

test('an unreachable broker fails the start fast, on stderr and in the JSON log', { timeout: 60_000 }, async () => {
  const port = await closedPort();
  const started = Date.now();
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'bin/rmbert.js'), 'serve'], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', RMBERT_KAFKA_BROKERS: `127.0.0.1:${port}`, RMBERT_KG_ENABLED: 'false', RMBERT_METRICS_PORT: '0', RMBERT_METRICS_HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)));
  const elapsed = Date.now() - started;
  assert.equal(code, 1, stderr);
  // kafkajs's retry policy alone took about 45 s; the start-up probe gives up after one retry.
  assert.ok(elapsed < 20_000, `took ${elapsed} ms`);
  assert.match(stderr, new RegExp(`cannot reach Kafka at 127\\.0\\.0\\.1:${port}`));
  assert.match(stderr, /RMBERT_KAFKA_BROKERS/);
  const events = stdout.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { level: string; msg: string; errorClass?: string });
  assert.ok(events.some((e) => e.level === 'error' && e.msg === 'could not start' && e.errorClass === 'TransportError'), stdout);
});
