import assert from 'node:assert/strict';
import { test } from 'node:test';
import { EXIT_CLEAN, EXIT_DEADLINE, EXIT_FAILED, stageDeadlineMs, stopAndExit } from '../../../src/cli/shutdown.ts';
import { SILENT_LOGGER } from '../../../src/pipeline/logging.ts';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

test('a clean stop gives 0; if the process is still alive after the linger time it is ended with 0', async () => {
  const exits: number[] = [];
  // Something that would keep the event loop alive, as a kafkajs socket does after a broker outage.
  const alive = setInterval(() => undefined, 1000);
  try {
    const code = await stopAndExit(async () => ({ clean: true }), EXIT_DEADLINE, { deadlineMs: 2000, logger: SILENT_LOGGER, exit: (c) => exits.push(c), lingerMs: 50 });
    assert.equal(code, EXIT_CLEAN);
    assert.deepEqual(exits, []);
    await sleep(120);
    assert.deepEqual(exits, [EXIT_CLEAN]);
  } finally {
    clearInterval(alive);
  }
});

test('a stop that never ends is cut at the deadline with EXIT_DEADLINE', async () => {
  const exits: number[] = [];
  const started = Date.now();
  // The deadline timer is unreferenced (it never keeps a process alive): hold the loop open as a hung socket would.
  const alive = setInterval(() => undefined, 1000);
  const code = await stopAndExit(() => new Promise(() => undefined), EXIT_FAILED, { deadlineMs: 150, logger: SILENT_LOGGER, exit: (c) => exits.push(c) }).finally(() =>
    clearInterval(alive),
  );
  const took = Date.now() - started;
  assert.equal(code, EXIT_DEADLINE);
  assert.deepEqual(exits, [EXIT_DEADLINE]);
  assert.ok(took >= 140 && took < 1000, `${took} ms`);
  await sleep(300);
  assert.deepEqual(exits, [EXIT_DEADLINE], 'ended once');
});

test('an unclean or failed stop gives the unclean code', async () => {
  const exits: number[] = [];
  const opts = { deadlineMs: 1000, logger: SILENT_LOGGER, exit: (c: number) => exits.push(c), lingerMs: 10 };
  assert.equal(await stopAndExit(async () => ({ clean: false }), EXIT_DEADLINE, opts), EXIT_DEADLINE);
  assert.equal(
    await stopAndExit(async () => {
      throw new Error('broken');
    }, EXIT_FAILED, opts),
    EXIT_FAILED,
  );
  await sleep(50);
  assert.deepEqual(exits.sort(), [EXIT_FAILED, EXIT_DEADLINE].sort());
});

test('the stage gets the deadline less a reserve for closing the rest', () => {
  assert.equal(stageDeadlineMs(25_000), 23_000);
  assert.equal(stageDeadlineMs(5000), 4000);
  assert.equal(stageDeadlineMs(100), 80);
});
