import assert from 'node:assert/strict';
import { test } from 'node:test';
import { KnowledgeGate } from '../../../src/pipeline/knowledge-gate.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';
import { NO_STAGE_METRICS } from '../../../src/pipeline/ports.ts';
import { FakeKnowledge } from './fakes.ts';

/** A source that could not read the graph at start (isOpen false) until the store answers a probe. */
class ClosedAtStart extends FakeKnowledge {
  opened = false;
  isOpen(): boolean {
    return this.opened;
  }
  override async probe(): Promise<void> {
    await super.probe();
    this.opened = true;
  }
}

test('a source unreachable at start is unavailable from the first moment (kg_available 0) and reconnects in the background without a lookup', async () => {
  const seen: boolean[] = [];
  const metrics = { ...NO_STAGE_METRICS, kgAvailable: (up: boolean) => seen.push(up) };
  const source = new ClosedAtStart();
  source.up = false;
  const gate = new KnowledgeGate(source, { retryInitialMs: 5, retryMaxMs: 10, logger: SILENT_LOGGER, metrics });
  try {
    assert.equal(gate.available, false);
    assert.deepEqual(seen, [false]);
    await new Promise((r) => setTimeout(r, 60));
    assert.ok(source.probes > 0, 'probing without waiting for a lookup');
    assert.equal(source.lookups, 0);
    source.up = true;
    const until = Date.now() + 2000;
    while (!gate.available && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
    assert.equal(gate.available, true);
    assert.deepEqual(seen, [false, true]);
  } finally {
    await gate.close();
  }
});

test('a source without isOpen (or open) starts available, as before', async () => {
  const seen: boolean[] = [];
  const gate = new KnowledgeGate(new FakeKnowledge(), { retryInitialMs: 5, retryMaxMs: 10, logger: SILENT_LOGGER, metrics: { ...NO_STAGE_METRICS, kgAvailable: (up: boolean) => seen.push(up) } });
  assert.equal(gate.available, true);
  assert.deepEqual(seen, [true]);
  await gate.close();
});
